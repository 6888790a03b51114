// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ISignedActions} from "./ISignedActions.sol";
import {ILedger} from "./ILedger.sol";

/// @title Loyalty payment controller
/// @notice Payments with loyalty at shops, in two steps each way:
///
///     openNewPayment      None      -> Open        user's loyalty (paid + fee) moves into escrow
///     closeNewPayment     Open      -> Closed      escrow -> shop's used total + fee account
///                         Open      -> Refunded    escrow -> user
///     openCancelPayment   Closed    -> CancelOpen  shop's used total + fee -> escrow (within the cancel period)
///     closeCancelPayment  CancelOpen-> Cancelled   escrow -> user
///                         CancelOpen-> Closed      escrow -> shop and fee account again
///     refundExpired       Open      -> Refunded    anyone, once the escrow timeout has passed
///                         CancelOpen-> Cancelled   anyone, once the escrow timeout has passed after
///                                                  the end of the cancel period
///
/// Every transition checks the exact prior state, so nothing is refunded or paid twice. Once a
/// payment's escrow has expired (Open: `deadline`; CancelOpen: end of the cancel period + escrow
/// timeout) only a refund is possible: `closeNewPayment(confirm)` and `closeCancelPayment(refuse)`
/// revert with {EscrowExpired}.
///
/// The user's signature fixes what the payment may cost: the loyalty type it is paid in and
/// `maxTotal`, the most (paid + fee, in that type) it may take from the account. Whatever the
/// rates or the fee rate do between signing and execution, the open charges at most `maxTotal`.
///
/// EIP-712 types in this contract's domain (name "LoyaltyPayment", version "1"). Verified on chain:
///     NewPayment(bytes32 paymentId,string purchaseId,uint256 amount,string currency,bytes32 shopId,
///                address account,uint8 loyaltyType,uint256 maxTotal,uint256 nonce,uint256 deadline)
///     CancelPayment(bytes32 paymentId,string purchaseId,bytes32 shopId,address account,uint256 nonce,uint256 deadline)
/// Verified off chain by the relay (same domain, so a signature can only ever mean one thing):
///     DenyPayment(bytes32 paymentId,address account,uint256 deadline)
///     DenyCancel(bytes32 paymentId,address account,uint256 deadline)
///     TemporaryAccount(address account,uint256 deadline)
interface ILoyaltyPayment is ISignedActions {
    enum PaymentStatus {
        None,
        Open,
        Closed,
        Refunded,
        CancelOpen,
        Cancelled
    }

    /// @notice The fields of a new payment the user signs (`NewPayment`, without the nonce).
    struct NewPayment {
        bytes32 paymentId;
        string purchaseId;
        uint256 amount;
        string currency;
        bytes32 shopId;
        address account;
        ILedger.LoyaltyType loyaltyType;
        uint256 maxTotal;
        uint256 deadline;
    }

    /// @notice What paying `amount` of `currency` costs `account`, as {estimate} returns it.
    /// Point fields are zero for token accounts and token fields are zero for point accounts;
    /// `*Value` fields are in the payment's currency.
    struct Estimate {
        ILedger.LoyaltyType loyaltyType;
        uint256 balance;
        uint256 paidPoint;
        uint256 paidToken;
        uint256 paidValue;
        uint256 feePoint;
        uint256 feeToken;
        uint256 feeValue;
        uint256 totalPoint;
        uint256 totalToken;
        uint256 totalValue;
    }

    /// @notice A payment as {paymentOf} returns it. Amounts are in the payment's loyalty type,
    /// except `shopPoint`, the value credited to the shop in points.
    struct PaymentInfo {
        bytes32 paymentId;
        bytes32 shopId;
        address account;
        ILedger.LoyaltyType loyaltyType;
        PaymentStatus status;
        uint256 paid;
        uint256 fee;
        uint256 shopPoint;
        uint256 feeRate;
        /// Open: when the escrow expires; Closed and CancelOpen: the end of the cancel period.
        uint256 deadline;
    }

    /// @notice Thrown when opening a payment whose id is zero or already used.
    error PaymentAlreadyExists(bytes32 paymentId);

    /// @notice Thrown when an action does not apply to the payment's current status.
    error InvalidPaymentStatus(bytes32 paymentId, PaymentStatus status);

    /// @notice Thrown when a cancel is opened after the cancel period.
    /// @param cancelDeadline The last moment (unix seconds) the payment could be cancelled.
    error CancelPeriodOver(bytes32 paymentId, uint256 cancelDeadline);

    /// @notice Thrown when {refundExpired} is called before the escrow timeout.
    error EscrowNotExpired(bytes32 paymentId, uint256 expiresAt);

    /// @notice Thrown when a payment amount is zero or converts to zero loyalty.
    error InvalidAmount(uint256 amount);

    /// @notice Thrown when the account pays in another loyalty type than the user signed for.
    error LoyaltyTypeMismatch(address account, ILedger.LoyaltyType loyaltyType);

    /// @notice Thrown when a payment would cost more than the user signed for (rates or the fee
    /// rate moved since the user signed).
    /// @param total What the payment would take (paid + fee), in the signed loyalty type.
    error ChargeExceedsMaxTotal(bytes32 paymentId, uint256 total, uint256 maxTotal);

    /// @notice Thrown when a payment whose escrow has expired is completed or has its cancel reversed.
    /// @param expiresAt The last moment (unix seconds) it could have been.
    error EscrowExpired(bytes32 paymentId, uint256 expiresAt);

    /// @notice Thrown by the constructor when the ledger or shop registry does not point back at
    /// this contract (their addresses are computed before deployment), the registry does not trust
    /// the ledger, or the ledger uses another registry or rate table than this contract.
    error MisconfiguredDeployment();

    /// @notice Thrown when an admin setting is out of its bounds.
    error InvalidSetting(uint256 value, uint256 min, uint256 max);

    /// @notice Emitted after a payment's loyalty moves into escrow.
    /// @param paid Loyalty paid for the purchase, in `loyaltyType` units.
    /// @param fee Fee, in `loyaltyType` units; `paid + fee` left the account.
    /// @param shopPoint The purchase's value in points, credited to the shop on close.
    event PaymentOpened(
        bytes32 indexed paymentId,
        bytes32 indexed shopId,
        address indexed account,
        string purchaseId,
        uint256 amount,
        string currency,
        ILedger.LoyaltyType loyaltyType,
        uint256 paid,
        uint256 fee,
        uint256 shopPoint
    );

    /// @notice Emitted after a payment completes: escrow -> shop and fee account.
    event PaymentClosed(bytes32 indexed paymentId, uint256 paid, uint256 fee);

    /// @notice Emitted after an open payment's escrow returns to the user (refused or expired).
    event PaymentRefunded(bytes32 indexed paymentId, uint256 total);

    /// @notice Emitted after the shop owner approves a cancel: the payment is back in escrow.
    event CancelOpened(bytes32 indexed paymentId, address indexed account);

    /// @notice Emitted after a cancel completes: escrow -> user.
    event PaymentCancelled(bytes32 indexed paymentId, uint256 total);

    /// @notice Emitted after an opened cancel is reversed: the payment is completed again.
    event CancelReverted(bytes32 indexed paymentId);

    event FeeRateSet(uint256 feeRate);
    event CancelPeriodSet(uint256 cancelPeriod);
    event EscrowTimeoutSet(uint256 escrowTimeout);

    /// @notice Opens a payment. Relay role; `data.account` signs `NewPayment` with its current nonce.
    /// Reverts unless the account pays in `data.loyaltyType` and the payment costs at most `data.maxTotal`.
    function openNewPayment(NewPayment calldata data, bytes calldata signature) external;

    /// @notice Completes (`confirm`, until the escrow expires) or refunds an open payment. Relay role.
    function closeNewPayment(bytes32 paymentId, bool confirm) external;

    /// @notice Opens the cancel of a completed payment. Relay role; the shop owner signs `CancelPayment`.
    function openCancelPayment(
        bytes32 paymentId,
        string calldata purchaseId,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Completes (`confirm`: refund the user) or reverts (until the escrow expires) an
    /// opened cancel. Relay role.
    function closeCancelPayment(bytes32 paymentId, bool confirm) external;

    /// @notice Returns a payment stuck in escrow to its user once the escrow timeout has passed. Anyone.
    function refundExpired(bytes32 paymentId) external;

    /// @notice The cost of paying `amount` of `currency` for `account`, as {openNewPayment} would charge it.
    function estimate(
        address account,
        uint256 amount,
        string calldata currency
    ) external view returns (Estimate memory);

    /// @notice A payment's record.
    function paymentOf(bytes32 paymentId) external view returns (PaymentInfo memory);

    /// @notice Fee rate in basis points (500 = 5 %).
    function feeRate() external view returns (uint16);

    /// @notice How long after completion a payment may be cancelled, in seconds (fixed per payment
    /// when it completes).
    function cancelPeriod() external view returns (uint32);

    /// @notice How long a payment may sit in escrow before anyone may refund it, in seconds (fixed
    /// per payment when it opens; for an opened cancel, counted from the end of the cancel period).
    function escrowTimeout() external view returns (uint32);
}
