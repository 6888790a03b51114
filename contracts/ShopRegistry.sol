// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IShopRegistry} from "./interfaces/IShopRegistry.sol";
import {SignedActions} from "./utils/SignedActions.sol";

/// @title ShopRegistry
/// @notice Shops, their reward settings, accumulated totals and withdrawals (settlement).
/// @dev Trust model:
/// - `RELAY_ROLE` submits actions the shop owner signed (EIP-712): register, update, open and
///   close a withdrawal, transfer the shop (and the new owner's acceptance). The relay pays the
///   gas; it cannot act without the owner's signature.
/// - The ledger (purchase rewards) and the payment controller (payments, cancels) update the
///   provided and used totals, within each shop's credit limit. Both addresses are fixed at
///   deployment: no role can be granted to record rewards or payments.
/// - The default admin (moved only by a delayed two-step transfer) manages roles, sets credit
///   limits and may correct a shop's provided and withdrawn totals, which emits an event.
/// Withdrawals are paid off-chain by the operator; this contract only accounts for them.
contract ShopRegistry is IShopRegistry, AccessControlDefaultAdminRules, SignedActions {
    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant RELAY_ROLE = keccak256("RELAY_ROLE");

    /// @notice providePercent is a percentage times 100 (1 % = 100), so 10000 is 100 %.
    uint256 public constant PERCENT_DENOMINATOR = 10_000;

    /// @notice Credit limits are whole points (18 decimals), stored as a count of points.
    uint256 public constant CREDIT_UNIT = 1e18;

    bytes32 public constant ADD_SHOP_TYPEHASH = keccak256(
        "AddShop(bytes32 shopId,string name,uint256 provideWaitTime,uint256 providePercent,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant UPDATE_SHOP_TYPEHASH = keccak256(
        "UpdateShop(bytes32 shopId,string name,uint256 provideWaitTime,uint256 providePercent,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant OPEN_WITHDRAWAL_TYPEHASH = keccak256(
        "OpenWithdrawal(bytes32 shopId,uint256 amount,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant CLOSE_WITHDRAWAL_TYPEHASH = keccak256(
        "CloseWithdrawal(bytes32 shopId,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant TRANSFER_SHOP_TYPEHASH = keccak256(
        "TransferShop(bytes32 shopId,address newOwner,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant ACCEPT_SHOP_TYPEHASH = keccak256(
        "AcceptShop(bytes32 shopId,address account,uint256 nonce,uint256 deadline)"
    );

    /*//////////////////////////////////////////////////////////////
                                  STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev Laid out so each hot operation writes one slot: a payment writes `usedPoint`, a
    /// reward writes `providedPoint` (same slot), a withdrawal writes slot 2. The credit limit sits
    /// beside the owner and reward rate, which rewards and cancels read anyway.
    struct Shop {
        // slot 0
        address owner;
        uint32 provideWaitTime;
        uint16 providePercent;
        uint48 creditLimit; // whole points
        // slot 1
        uint128 providedPoint;
        uint128 usedPoint;
        // slot 2
        uint128 withdrawnPoint;
        uint128 withdrawAmount; // non-zero while a withdrawal is open
        // slot 3
        bytes32 shopId;
        // slot 4
        string name;
    }

    /// @notice The ledger, which records purchase rewards.
    address public immutable ledger;
    /// @notice The payment controller, which records payments and cancels.
    address public immutable paymentController;

    Shop[] private _shops;
    /// @dev shop index + 1, so that zero means "not registered".
    mapping(bytes32 shopId => uint256) private _positions;
    mapping(bytes32 shopId => address) private _pendingOwners;
    uint48 private _defaultCreditLimit; // whole points

    /// @param admin Receives the default admin role.
    /// @param adminDelay How long a transfer of the default admin role waits before it can be accepted.
    /// @param relays Receive the relay role.
    /// @param ledger_ The ledger contract (deployed after this one: its address is computed in advance).
    /// @param paymentController_ The payment controller contract (likewise).
    constructor(
        address admin,
        uint48 adminDelay,
        address[] memory relays,
        address ledger_,
        address paymentController_
    ) AccessControlDefaultAdminRules(adminDelay, admin) SignedActions("ShopRegistry", "1") {
        // slither-disable-next-line missing-zero-check (LoyaltyPayment's constructor checks the wiring)
        ledger = ledger_;
        // slither-disable-next-line missing-zero-check (likewise)
        paymentController = paymentController_;
        for (uint256 i = 0; i < relays.length; ++i) {
            _grantRole(RELAY_ROLE, relays[i]);
        }
    }

    modifier onlyFrom(address caller) {
        if (msg.sender != caller) revert UnauthorizedCaller(msg.sender);
        _;
    }

    /*//////////////////////////////////////////////////////////////
                          OWNER-SIGNED ACTIONS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function addShop(
        bytes32 shopId,
        string calldata name,
        uint32 provideWaitTime,
        uint16 providePercent,
        address account,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        if (shopId == bytes32(0) || _positions[shopId] != 0) revert ShopAlreadyExists(shopId);
        if (providePercent > PERCENT_DENOMINATOR) revert InvalidShopSettings(providePercent);
        bytes32 structHash = keccak256(
            abi.encode(
                ADD_SHOP_TYPEHASH,
                shopId,
                keccak256(bytes(name)),
                uint256(provideWaitTime),
                uint256(providePercent),
                account,
                _useNonce(account),
                deadline
            )
        );
        _verifySignature(account, structHash, deadline, signature);

        Shop storage shop = _shops.push();
        shop.owner = account;
        shop.provideWaitTime = provideWaitTime;
        shop.providePercent = providePercent;
        shop.creditLimit = _defaultCreditLimit;
        shop.shopId = shopId;
        shop.name = name;
        _positions[shopId] = _shops.length;
        emit ShopAdded(shopId, account, name, provideWaitTime, providePercent);
    }

    /// @inheritdoc IShopRegistry
    function updateShop(
        bytes32 shopId,
        string calldata name,
        uint32 provideWaitTime,
        uint16 providePercent,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        if (providePercent > PERCENT_DENOMINATOR) revert InvalidShopSettings(providePercent);
        Shop storage shop = _shopById(shopId);
        address owner = shop.owner;
        bytes32 structHash = keccak256(
            abi.encode(
                UPDATE_SHOP_TYPEHASH,
                shopId,
                keccak256(bytes(name)),
                uint256(provideWaitTime),
                uint256(providePercent),
                owner,
                _useNonce(owner),
                deadline
            )
        );
        _verifySignature(owner, structHash, deadline, signature);

        shop.provideWaitTime = provideWaitTime;
        shop.providePercent = providePercent;
        shop.name = name;
        emit ShopUpdated(shopId, name, provideWaitTime, providePercent);
    }

    /// @inheritdoc IShopRegistry
    function openWithdrawal(
        bytes32 shopId,
        uint256 amount,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        Shop storage shop = _shopById(shopId);
        address owner = shop.owner;
        bytes32 structHash = keccak256(
            abi.encode(OPEN_WITHDRAWAL_TYPEHASH, shopId, amount, owner, _useNonce(owner), deadline)
        );
        _verifySignature(owner, structHash, deadline, signature);

        uint256 open = shop.withdrawAmount;
        if (open != 0) revert WithdrawalAlreadyOpen(shopId, open);
        uint256 available = _withdrawable(shop);
        if (amount == 0 || amount > available) revert InvalidWithdrawalAmount(shopId, amount, available);
        // amount <= available <= usedPoint, which is a uint128.
        shop.withdrawAmount = uint128(amount);
        emit WithdrawalOpened(shopId, owner, amount);
    }

    /// @inheritdoc IShopRegistry
    function closeWithdrawal(bytes32 shopId, uint256 deadline, bytes calldata signature) external onlyRole(RELAY_ROLE) {
        Shop storage shop = _shopById(shopId);
        address owner = shop.owner;
        bytes32 structHash = keccak256(
            abi.encode(CLOSE_WITHDRAWAL_TYPEHASH, shopId, owner, _useNonce(owner), deadline)
        );
        _verifySignature(owner, structHash, deadline, signature);

        uint128 amount = shop.withdrawAmount;
        if (amount == 0) revert NoOpenWithdrawal(shopId);
        // Checked: fits while withdrawnPoint + amount <= usedPoint; only an admin correction could break that.
        uint128 withdrawn = shop.withdrawnPoint + amount;
        shop.withdrawnPoint = withdrawn;
        shop.withdrawAmount = 0;
        emit WithdrawalClosed(shopId, owner, amount, withdrawn);
    }

    /// @inheritdoc IShopRegistry
    function transferShop(
        bytes32 shopId,
        address newOwner,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        address owner = _shopById(shopId).owner;
        bytes32 structHash = keccak256(
            abi.encode(TRANSFER_SHOP_TYPEHASH, shopId, newOwner, owner, _useNonce(owner), deadline)
        );
        _verifySignature(owner, structHash, deadline, signature);

        _pendingOwners[shopId] = newOwner;
        emit ShopTransferStarted(shopId, owner, newOwner);
    }

    /// @inheritdoc IShopRegistry
    function acceptShop(bytes32 shopId, uint256 deadline, bytes calldata signature) external onlyRole(RELAY_ROLE) {
        Shop storage shop = _shopById(shopId);
        address newOwner = _pendingOwners[shopId];
        if (newOwner == address(0)) revert NoPendingTransfer(shopId);
        bytes32 structHash = keccak256(
            abi.encode(ACCEPT_SHOP_TYPEHASH, shopId, newOwner, _useNonce(newOwner), deadline)
        );
        _verifySignature(newOwner, structHash, deadline, signature);

        address previousOwner = shop.owner;
        shop.owner = newOwner;
        delete _pendingOwners[shopId];
        emit ShopTransferred(shopId, previousOwner, newOwner);
    }

    /*//////////////////////////////////////////////////////////////
                                  ADMIN
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function setCreditLimit(bytes32 shopId, uint256 creditLimit) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _shopById(shopId).creditLimit = _toCreditUnits(creditLimit);
        emit CreditLimitSet(shopId, creditLimit);
    }

    /// @inheritdoc IShopRegistry
    function setDefaultCreditLimit(uint256 creditLimit) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _defaultCreditLimit = _toCreditUnits(creditLimit);
        emit DefaultCreditLimitSet(creditLimit);
    }

    /// @inheritdoc IShopRegistry
    function correctShopTotals(
        bytes32 shopId,
        uint256 providedPoint,
        uint256 withdrawnPoint
    ) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Shop storage shop = _shopById(shopId);
        uint256 previousProvided = shop.providedPoint;
        uint256 previousWithdrawn = shop.withdrawnPoint;
        shop.providedPoint = SafeCast.toUint128(providedPoint);
        shop.withdrawnPoint = SafeCast.toUint128(withdrawnPoint);
        emit ShopTotalsCorrected(shopId, providedPoint, withdrawnPoint, previousProvided, previousWithdrawn);
    }

    /*//////////////////////////////////////////////////////////////
                               ACCOUNTING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function recordProvision(
        bytes32 shopId,
        uint256 purchasePoint
    ) external onlyFrom(ledger) returns (uint256 rewardPoint) {
        Shop storage shop = _shopById(shopId);
        rewardPoint = (purchasePoint * shop.providePercent) / PERCENT_DENOMINATOR;
        uint256 provided = shop.providedPoint + rewardPoint;
        _checkCredit(shopId, shop, provided, shop.usedPoint);
        shop.providedPoint = SafeCast.toUint128(provided);
        emit ProvisionRecorded(shopId, rewardPoint, provided);
    }

    /// @inheritdoc IShopRegistry
    function recordPayment(uint32 shopIndex, uint256 point) external onlyFrom(paymentController) {
        Shop storage shop = _shops[shopIndex];
        shop.usedPoint = SafeCast.toUint128(shop.usedPoint + point);
    }

    /// @inheritdoc IShopRegistry
    function recordCancellation(uint32 shopIndex, uint256 point) external onlyFrom(paymentController) {
        Shop storage shop = _shops[shopIndex];
        // Checked subtraction: a cancellation only ever removes a value an earlier payment added.
        uint256 used = shop.usedPoint - point;
        _checkCredit(shop.shopId, shop, shop.providedPoint, used);
        shop.usedPoint = uint128(used);
    }

    /*//////////////////////////////////////////////////////////////
                                   VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function indexOf(bytes32 shopId) external view returns (uint32) {
        return SafeCast.toUint32(_positionOf(shopId) - 1);
    }

    /// @inheritdoc IShopRegistry
    function shopAt(uint32 shopIndex) external view returns (bytes32 shopId, address account) {
        Shop storage shop = _shops[shopIndex];
        return (shop.shopId, shop.owner);
    }

    /// @inheritdoc IShopRegistry
    function shopOf(bytes32 shopId) external view returns (ShopInfo memory info) {
        Shop storage shop = _shopById(shopId);
        info.shopId = shopId;
        info.name = shop.name;
        info.provideWaitTime = shop.provideWaitTime;
        info.providePercent = shop.providePercent;
        info.account = shop.owner;
        info.providedPoint = shop.providedPoint;
        info.usedPoint = shop.usedPoint;
        info.settledPoint = _settled(shop);
        info.withdrawnPoint = shop.withdrawnPoint;
        info.withdrawAmount = shop.withdrawAmount;
        info.withdrawOpen = shop.withdrawAmount != 0;
        info.creditLimit = uint256(shop.creditLimit) * CREDIT_UNIT;
        info.pendingOwner = _pendingOwners[shopId];
    }

    /// @inheritdoc IShopRegistry
    function shopCount() external view returns (uint256) {
        return _shops.length;
    }

    /// @inheritdoc IShopRegistry
    function defaultCreditLimit() external view returns (uint256) {
        return uint256(_defaultCreditLimit) * CREDIT_UNIT;
    }

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _positionOf(bytes32 shopId) private view returns (uint256 position) {
        position = _positions[shopId];
        if (position == 0) revert UnknownShop(shopId);
    }

    function _shopById(bytes32 shopId) private view returns (Shop storage) {
        // Cannot underflow: _positionOf never returns zero.
        unchecked {
            return _shops[_positionOf(shopId) - 1];
        }
    }

    /// @dev Reverts unless the shop's debt with these totals is within its credit limit.
    function _checkCredit(bytes32 shopId, Shop storage shop, uint256 provided, uint256 used) private view {
        uint256 owed = provided + shop.withdrawnPoint + shop.withdrawAmount;
        if (owed > used) {
            uint256 limit = uint256(shop.creditLimit) * CREDIT_UNIT;
            if (owed - used > limit) revert CreditLimitExceeded(shopId, owed - used, limit);
        }
    }

    function _toCreditUnits(uint256 creditLimit) private pure returns (uint48) {
        if (creditLimit % CREDIT_UNIT != 0 || creditLimit / CREDIT_UNIT > type(uint48).max) {
            revert InvalidCreditLimit(creditLimit);
        }
        return uint48(creditLimit / CREDIT_UNIT);
    }

    function _settled(Shop storage shop) private view returns (uint256) {
        uint256 used = shop.usedPoint;
        uint256 provided = shop.providedPoint;
        return used > provided ? used - provided : 0;
    }

    function _withdrawable(Shop storage shop) private view returns (uint256) {
        uint256 settled = _settled(shop);
        uint256 withdrawn = shop.withdrawnPoint;
        return settled > withdrawn ? settled - withdrawn : 0;
    }
}
