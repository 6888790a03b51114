// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISignedActions} from "./ISignedActions.sol";

/// @title Shop registry
/// @notice Shops, their loyalty settings, their accumulated totals and their withdrawals.
/// All totals are in points (1 point = 1 KRW, 18 decimals):
/// - `providedPoint`: loyalty the shop handed out through purchase rewards;
/// - `usedPoint`: loyalty customers spent at the shop (net of cancellations);
/// - `settledPoint = max(0, usedPoint - providedPoint)`: what the shop is owed;
/// - `withdrawnPoint`: what has been paid out to the shop through completed withdrawals.
/// A shop may withdraw at most `settledPoint - withdrawnPoint`, one withdrawal at a time.
///
/// Credit limit. A shop's debt is what it has provided and been paid beyond what its customers
/// spent: `debt = max(0, providedPoint + withdrawnPoint + withdrawAmount - usedPoint)`. Only a
/// purchase reward and the opening of a cancel raise it, and either reverts with
/// {CreditLimitExceeded} when the debt would then exceed the shop's `creditLimit` (set by the
/// admin, in whole points). So the operator's exposure to a shop — loyalty it issued but did not
/// earn, and value it withdrew and then cancelled — never exceeds the shop's credit limit.
///
/// Shop ownership moves in two steps, each signed: the owner names a new owner ({transferShop}),
/// and the new owner accepts ({acceptShop}).
interface IShopRegistry is ISignedActions {
    /// @notice A shop's settings and totals, as returned by {shopOf}.
    struct ShopInfo {
        bytes32 shopId;
        string name;
        uint256 provideWaitTime;
        uint256 providePercent;
        address account;
        uint256 providedPoint;
        uint256 usedPoint;
        uint256 settledPoint;
        uint256 withdrawnPoint;
        uint256 withdrawAmount;
        bool withdrawOpen;
        uint256 creditLimit;
        address pendingOwner;
    }

    /// @notice Thrown when a function reserved for the ledger or the payment controller is called by another address.
    error UnauthorizedCaller(address caller);

    /// @notice Thrown when a shop id is not registered.
    error UnknownShop(bytes32 shopId);

    /// @notice Thrown when registering a shop id that is zero or already taken.
    error ShopAlreadyExists(bytes32 shopId);

    /// @notice Thrown when a shop setting is out of range.
    /// @param providePercent The rejected reward rate (percent x 100, at most 10000).
    error InvalidShopSettings(uint256 providePercent);

    /// @notice Thrown when a withdrawal is requested while another one is open.
    error WithdrawalAlreadyOpen(bytes32 shopId, uint256 openAmount);

    /// @notice Thrown when a withdrawal is completed but none is open.
    error NoOpenWithdrawal(bytes32 shopId);

    /// @notice Thrown when a reward or a cancel would take a shop's debt beyond its credit limit.
    /// @param debt The debt the operation would leave.
    error CreditLimitExceeded(bytes32 shopId, uint256 debt, uint256 creditLimit);

    /// @notice Thrown when a credit limit is not a whole number of points below 2^48 points.
    error InvalidCreditLimit(uint256 creditLimit);

    /// @notice Thrown when a shop transfer is accepted but none is pending.
    error NoPendingTransfer(bytes32 shopId);

    /// @notice Thrown when a withdrawal asks for zero or for more than the shop may withdraw.
    /// @param available `settledPoint - withdrawnPoint`, or zero while the shop is in debt.
    error InvalidWithdrawalAmount(bytes32 shopId, uint256 amount, uint256 available);

    /// @notice Emitted after a shop is registered.
    event ShopAdded(
        bytes32 indexed shopId,
        address indexed account,
        string name,
        uint256 provideWaitTime,
        uint256 providePercent
    );

    /// @notice Emitted after a shop's settings change.
    event ShopUpdated(bytes32 indexed shopId, string name, uint256 provideWaitTime, uint256 providePercent);

    /// @notice Emitted after a purchase reward is recorded for a shop.
    event ProvisionRecorded(bytes32 indexed shopId, uint256 rewardPoint, uint256 providedPoint);

    /// @notice Emitted after a withdrawal is registered (opened) by the shop owner.
    event WithdrawalOpened(bytes32 indexed shopId, address indexed account, uint256 amount);

    /// @notice Emitted after the shop owner confirms a withdrawal arrived; `withdrawnPoint` is the new total.
    event WithdrawalClosed(bytes32 indexed shopId, address indexed account, uint256 amount, uint256 withdrawnPoint);

    /// @notice Emitted after the admin sets a shop's credit limit (in points).
    event CreditLimitSet(bytes32 indexed shopId, uint256 creditLimit);

    /// @notice Emitted after the admin sets the credit limit new shops start with.
    event DefaultCreditLimitSet(uint256 creditLimit);

    /// @notice Emitted after the admin corrects a shop's provided and withdrawn totals.
    event ShopTotalsCorrected(
        bytes32 indexed shopId,
        uint256 providedPoint,
        uint256 withdrawnPoint,
        uint256 previousProvidedPoint,
        uint256 previousWithdrawnPoint
    );

    /// @notice Emitted after the owner names a new owner (`newOwner` zero: a pending transfer is withdrawn).
    event ShopTransferStarted(bytes32 indexed shopId, address indexed account, address indexed newOwner);

    /// @notice Emitted after the new owner accepts a shop.
    event ShopTransferred(bytes32 indexed shopId, address indexed previousOwner, address indexed newOwner);

    /// @notice Registers a shop. Relay role; `account` (the owner) signs `AddShop`.
    function addShop(
        bytes32 shopId,
        string calldata name,
        uint32 provideWaitTime,
        uint16 providePercent,
        address account,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Changes a shop's name and reward settings. Relay role; the owner signs `UpdateShop`.
    function updateShop(
        bytes32 shopId,
        string calldata name,
        uint32 provideWaitTime,
        uint16 providePercent,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Registers a withdrawal of `amount` points. Relay role; the owner signs `OpenWithdrawal`.
    function openWithdrawal(bytes32 shopId, uint256 amount, uint256 deadline, bytes calldata signature) external;

    /// @notice Completes the open withdrawal once the owner has received the money. Relay role;
    /// the owner signs `CloseWithdrawal`.
    function closeWithdrawal(bytes32 shopId, uint256 deadline, bytes calldata signature) external;

    /// @notice Names `newOwner` as the shop's next owner. Relay role; the owner signs
    /// `TransferShop(bytes32 shopId,address newOwner,address account,uint256 nonce,uint256 deadline)`.
    function transferShop(bytes32 shopId, address newOwner, uint256 deadline, bytes calldata signature) external;

    /// @notice Makes the pending owner the shop's owner. Relay role; the pending owner signs
    /// `AcceptShop(bytes32 shopId,address account,uint256 nonce,uint256 deadline)`.
    function acceptShop(bytes32 shopId, uint256 deadline, bytes calldata signature) external;

    /// @notice Sets a shop's credit limit, in points (a whole number of points). Admin.
    function setCreditLimit(bytes32 shopId, uint256 creditLimit) external;

    /// @notice Sets the credit limit shops registered from now on start with. Admin.
    function setDefaultCreditLimit(uint256 creditLimit) external;

    /// @notice Corrects a shop's provided and withdrawn totals (e.g. a reward recorded in error, or
    /// a debt the shop repaid off chain). Admin; emits {ShopTotalsCorrected}.
    function correctShopTotals(bytes32 shopId, uint256 providedPoint, uint256 withdrawnPoint) external;

    /// @notice Adds a purchase reward to the shop's provided total and returns the reward in points:
    /// `purchasePoint * providePercent / 10000`. Only the ledger; within the shop's credit limit.
    function recordProvision(bytes32 shopId, uint256 purchasePoint) external returns (uint256 rewardPoint);

    /// @notice Adds a completed payment's value to the shop's used total. Only the payment controller.
    function recordPayment(uint32 shopIndex, uint256 point) external;

    /// @notice Removes a cancelled payment's value from the shop's used total. Only the payment
    /// controller; within the shop's credit limit.
    function recordCancellation(uint32 shopIndex, uint256 point) external;

    /// @notice The compact index the payment controller stores instead of the 32-byte shop id.
    function indexOf(bytes32 shopId) external view returns (uint32);

    /// @notice The shop id and owner of the shop at `shopIndex`.
    function shopAt(uint32 shopIndex) external view returns (bytes32 shopId, address account);

    /// @notice A shop's settings and totals.
    function shopOf(bytes32 shopId) external view returns (ShopInfo memory);

    /// @notice The ledger and payment controller this registry trusts.
    function ledger() external view returns (address);

    function paymentController() external view returns (address);

    /// @notice Number of registered shops.
    function shopCount() external view returns (uint256);

    /// @notice The credit limit shops registered from now on start with, in points.
    function defaultCreditLimit() external view returns (uint256);
}
