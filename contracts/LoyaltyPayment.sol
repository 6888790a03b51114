// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ICurrencyRate} from "./interfaces/ICurrencyRate.sol";
import {ILedger} from "./interfaces/ILedger.sol";
import {ILoyaltyPayment} from "./interfaces/ILoyaltyPayment.sol";
import {IShopRegistry} from "./interfaces/IShopRegistry.sol";
import {SignedActions} from "./utils/SignedActions.sol";

/// @title LoyaltyPayment
/// @notice The payment controller: opens, closes and cancels payments with loyalty at shops.
/// @dev Trust model:
/// - `RELAY_ROLE` submits every state change and pays the gas. It cannot move a user's loyalty
///   without the user's `NewPayment` signature, which bounds the charge (`maxTotal`), nor cancel
///   a payment without the shop owner's `CancelPayment` signature. Closing (escrow -> shop, or
///   refund) is the relay's decision until the escrow expires; after that only a refund is possible.
/// - Anyone may return a payment to its user once it has sat in escrow past the timeout, so
///   loyalty cannot be stuck if the relay disappears.
/// - The default admin (moved only by a delayed two-step transfer) sets the fee rate (capped), the
///   cancel period and the escrow timeout.
/// This contract holds no balances: the ledger does, and trusts this contract (and only it) for
/// escrow movements, as the shop registry does for used totals. That wiring is fixed at deployment
/// and checked by the constructor.
contract LoyaltyPayment is ILoyaltyPayment, AccessControlDefaultAdminRules, SignedActions {
    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant RELAY_ROLE = keccak256("RELAY_ROLE");

    bytes32 public constant NEW_PAYMENT_TYPEHASH = keccak256(
        "NewPayment(bytes32 paymentId,string purchaseId,uint256 amount,string currency,bytes32 shopId,address account,"
        "uint8 loyaltyType,uint256 maxTotal,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant CANCEL_PAYMENT_TYPEHASH = keccak256(
        "CancelPayment(bytes32 paymentId,string purchaseId,bytes32 shopId,address account,uint256 nonce,uint256 deadline)"
    );

    uint256 public constant FEE_DENOMINATOR = 10_000;
    uint256 public constant MAX_FEE_RATE = 1_000; // 10 %
    uint256 public constant MAX_CANCEL_PERIOD = 365 days;
    uint256 public constant MIN_ESCROW_TIMEOUT = 10 minutes;
    uint256 public constant MAX_ESCROW_TIMEOUT = 30 days;

    ILedger public immutable ledger;
    IShopRegistry public immutable shops;
    ICurrencyRate public immutable rates;

    /*//////////////////////////////////////////////////////////////
                                  STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev Two slots per payment. Strings (purchase id, currency) live only in events. The shop is
    /// referenced by its registry index; the fee is recomputed from the rate fixed at opening.
    /// `deadline` (unix seconds; uint32 lasts until 2106) depends on the status:
    ///   Open: when the escrow expires (opened + escrow timeout);
    ///   Closed, CancelOpen: the end of the cancel period (completed + cancel period).
    struct Payment {
        // slot 0
        address account;
        uint32 shopIndex;
        uint32 deadline;
        uint16 feeRate;
        PaymentStatus status;
        ILedger.LoyaltyType loyaltyType;
        // slot 1
        uint128 paid;
        uint128 shopPoint;
    }

    struct Settings {
        uint16 feeRate;
        uint32 cancelPeriod;
        uint32 escrowTimeout;
    }

    Settings private _settings;
    mapping(bytes32 paymentId => Payment) private _payments;

    /// @param admin Receives the default admin role.
    /// @param adminDelay How long a transfer of the default admin role waits before it can be accepted.
    /// @param relays Receive the relay role.
    constructor(
        address admin,
        uint48 adminDelay,
        address[] memory relays,
        ILedger ledger_,
        IShopRegistry shops_,
        ICurrencyRate rates_
    ) AccessControlDefaultAdminRules(adminDelay, admin) SignedActions("LoyaltyPayment", "1") {
        if (ledger_.paymentController() != address(this) || shops_.paymentController() != address(this)) {
            revert MisconfiguredDeployment();
        }
        // The ledger records rewards in the same registry and converts with the same rates.
        if (
            shops_.ledger() != address(ledger_) ||
            address(ledger_.shops()) != address(shops_) ||
            address(ledger_.rates()) != address(rates_)
        ) revert MisconfiguredDeployment();
        ledger = ledger_;
        shops = shops_;
        rates = rates_;
        _settings = Settings({feeRate: 500, cancelPeriod: 7 days, escrowTimeout: 1 days});
        for (uint256 i = 0; i < relays.length; ++i) {
            _grantRole(RELAY_ROLE, relays[i]);
        }
    }

    /*//////////////////////////////////////////////////////////////
                               NEW PAYMENTS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILoyaltyPayment
    function openNewPayment(NewPayment calldata data, bytes calldata signature) external onlyRole(RELAY_ROLE) {
        bytes32 paymentId = data.paymentId;
        if (paymentId == bytes32(0) || _payments[paymentId].status != PaymentStatus.None) {
            revert PaymentAlreadyExists(paymentId);
        }
        address account = data.account;
        _verifySignature(account, _newPaymentHash(data, _useNonce(account)), data.deadline, signature);

        uint32 shopIndex = shops.indexOf(data.shopId);
        // slither-disable-next-line unused-return (only the type: the ledger checks the balance itself)
        (ILedger.LoyaltyType loyaltyType, ) = ledger.accountOf(account);
        Settings memory settings = _settings;
        (uint256 paid, uint256 fee, uint256 shopPoint) = _quote(
            loyaltyType,
            data.amount,
            data.currency,
            settings.feeRate
        );
        // slither-disable-next-line incorrect-equality,timestamp (exactly zero loyalty; no time involved)
        if (paid == 0) revert InvalidAmount(data.amount);
        if (loyaltyType != data.loyaltyType) revert LoyaltyTypeMismatch(account, loyaltyType);
        if (paid + fee > data.maxTotal) revert ChargeExceedsMaxTotal(paymentId, paid + fee, data.maxTotal);

        _payments[paymentId] = Payment({
            account: account,
            shopIndex: shopIndex,
            deadline: SafeCast.toUint32(block.timestamp + settings.escrowTimeout),
            feeRate: settings.feeRate,
            status: PaymentStatus.Open,
            loyaltyType: loyaltyType,
            paid: SafeCast.toUint128(paid),
            shopPoint: SafeCast.toUint128(shopPoint)
        });
        _emitOpened(data, loyaltyType, paid, fee, shopPoint);
        ledger.holdInEscrow(account, loyaltyType, paid + fee);
    }

    /// @inheritdoc ILoyaltyPayment
    function closeNewPayment(bytes32 paymentId, bool confirm) external onlyRole(RELAY_ROLE) {
        Payment storage p = _payments[paymentId];
        _requireStatus(paymentId, p.status, PaymentStatus.Open);
        if (confirm) {
            uint256 expiresAt = p.deadline;
            // slither-disable-next-line timestamp (the escrow timeout is a time bound by design)
            if (block.timestamp > expiresAt) revert EscrowExpired(paymentId, expiresAt);
            p.status = PaymentStatus.Closed;
            p.deadline = SafeCast.toUint32(block.timestamp + _settings.cancelPeriod);
            _releaseToShop(paymentId, p);
        } else {
            _refund(paymentId, p, PaymentStatus.Refunded);
        }
    }

    /*//////////////////////////////////////////////////////////////
                               CANCELLATION
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILoyaltyPayment
    function openCancelPayment(
        bytes32 paymentId,
        string calldata purchaseId,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        Payment storage p = _payments[paymentId];
        _requireStatus(paymentId, p.status, PaymentStatus.Closed);
        uint256 cancelDeadline = p.deadline;
        // slither-disable-next-line timestamp (the cancel period is a time bound by design)
        if (block.timestamp > cancelDeadline) revert CancelPeriodOver(paymentId, cancelDeadline);

        (bytes32 shopId, address owner) = shops.shopAt(p.shopIndex);
        bytes32 structHash = keccak256(
            abi.encode(
                CANCEL_PAYMENT_TYPEHASH,
                paymentId,
                keccak256(bytes(purchaseId)),
                shopId,
                owner,
                _useNonce(owner),
                deadline
            )
        );
        _verifySignature(owner, structHash, deadline, signature);

        p.status = PaymentStatus.CancelOpen;
        uint256 paid = p.paid;
        emit CancelOpened(paymentId, owner);
        ledger.returnToEscrow(p.loyaltyType, paid, _fee(paid, p.feeRate));
        shops.recordCancellation(p.shopIndex, p.shopPoint);
    }

    /// @inheritdoc ILoyaltyPayment
    function closeCancelPayment(bytes32 paymentId, bool confirm) external onlyRole(RELAY_ROLE) {
        Payment storage p = _payments[paymentId];
        _requireStatus(paymentId, p.status, PaymentStatus.CancelOpen);
        if (confirm) {
            _refund(paymentId, p, PaymentStatus.Cancelled);
        } else {
            uint256 expiresAt = uint256(p.deadline) + _settings.escrowTimeout;
            // slither-disable-next-line timestamp (the escrow timeout is a time bound by design)
            if (block.timestamp > expiresAt) revert EscrowExpired(paymentId, expiresAt);
            // Back to a completed payment; its cancel period still ends when it did.
            p.status = PaymentStatus.Closed;
            emit CancelReverted(paymentId);
            _releaseToShop(paymentId, p);
        }
    }

    /// @inheritdoc ILoyaltyPayment
    function refundExpired(bytes32 paymentId) external {
        Payment storage p = _payments[paymentId];
        PaymentStatus status = p.status;
        if (status != PaymentStatus.Open && status != PaymentStatus.CancelOpen) {
            revert InvalidPaymentStatus(paymentId, status);
        }
        uint256 expiresAt = status == PaymentStatus.Open ? p.deadline : uint256(p.deadline) + _settings.escrowTimeout;
        // slither-disable-next-line timestamp (the escrow timeout is a time bound by design)
        if (block.timestamp <= expiresAt) revert EscrowNotExpired(paymentId, expiresAt);
        _refund(paymentId, p, status == PaymentStatus.Open ? PaymentStatus.Refunded : PaymentStatus.Cancelled);
    }

    /*//////////////////////////////////////////////////////////////
                                   VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILoyaltyPayment
    function estimate(
        address account,
        uint256 amount,
        string calldata currency
    ) external view returns (Estimate memory e) {
        uint16 rate = _settings.feeRate;
        (e.loyaltyType, e.balance) = ledger.accountOf(account);
        (uint256 paid, uint256 fee, ) = _quote(e.loyaltyType, amount, currency, rate);
        if (e.loyaltyType == ILedger.LoyaltyType.Point) {
            (e.paidPoint, e.feePoint, e.totalPoint) = (paid, fee, paid + fee);
        } else {
            (e.paidToken, e.feeToken, e.totalToken) = (paid, fee, paid + fee);
        }
        e.paidValue = amount;
        e.feeValue = _fee(amount, rate);
        e.totalValue = amount + e.feeValue;
    }

    /// @inheritdoc ILoyaltyPayment
    function paymentOf(bytes32 paymentId) external view returns (PaymentInfo memory info) {
        Payment memory p = _payments[paymentId];
        info.paymentId = paymentId;
        info.status = p.status;
        // slither-disable-next-line incorrect-equality,timestamp (an unknown payment; no time involved)
        if (p.status == PaymentStatus.None) return info;
        // slither-disable-next-line unused-return (the owner is not part of a payment's record)
        (info.shopId, ) = shops.shopAt(p.shopIndex);
        info.account = p.account;
        info.loyaltyType = p.loyaltyType;
        info.paid = p.paid;
        info.fee = _fee(p.paid, p.feeRate);
        info.shopPoint = p.shopPoint;
        info.feeRate = p.feeRate;
        info.deadline = p.deadline;
    }

    /// @inheritdoc ILoyaltyPayment
    function feeRate() external view returns (uint16) {
        return _settings.feeRate;
    }

    /// @inheritdoc ILoyaltyPayment
    function cancelPeriod() external view returns (uint32) {
        return _settings.cancelPeriod;
    }

    /// @inheritdoc ILoyaltyPayment
    function escrowTimeout() external view returns (uint32) {
        return _settings.escrowTimeout;
    }

    /*//////////////////////////////////////////////////////////////
                                   ADMIN
    //////////////////////////////////////////////////////////////*/

    /// @notice Sets the fee rate for payments opened from now on, in basis points (at most 10 %).
    function setFeeRate(uint16 rate) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (rate > MAX_FEE_RATE) revert InvalidSetting(rate, 0, MAX_FEE_RATE);
        _settings.feeRate = rate;
        emit FeeRateSet(rate);
    }

    /// @notice Sets how long after completion a payment may be cancelled.
    function setCancelPeriod(uint32 period) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (period > MAX_CANCEL_PERIOD) revert InvalidSetting(period, 0, MAX_CANCEL_PERIOD);
        _settings.cancelPeriod = period;
        emit CancelPeriodSet(period);
    }

    /// @notice Sets how long a payment may sit in escrow before anyone may refund it.
    function setEscrowTimeout(uint32 timeout) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (timeout < MIN_ESCROW_TIMEOUT || timeout > MAX_ESCROW_TIMEOUT) {
            revert InvalidSetting(timeout, MIN_ESCROW_TIMEOUT, MAX_ESCROW_TIMEOUT);
        }
        _settings.escrowTimeout = timeout;
        emit EscrowTimeoutSet(timeout);
    }

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

    /// @dev The one place payment amounts are computed: `paid` in the account's loyalty type, the
    /// fee on top of it, and the purchase's value in points for the shop's totals.
    function _quote(
        ILedger.LoyaltyType loyaltyType,
        uint256 amount,
        string calldata currency,
        uint16 rate
    ) private view returns (uint256 paid, uint256 fee, uint256 shopPoint) {
        shopPoint = rates.toPoint(amount, currency);
        paid = loyaltyType == ILedger.LoyaltyType.Point ? shopPoint : rates.toToken(amount, currency);
        fee = _fee(paid, rate);
    }

    function _fee(uint256 amount, uint256 rate) private pure returns (uint256) {
        return (amount * rate) / FEE_DENOMINATOR;
    }

    function _newPaymentHash(NewPayment calldata data, uint256 nonce) private pure returns (bytes32) {
        return
            keccak256(
                abi.encode(
                    NEW_PAYMENT_TYPEHASH,
                    data.paymentId,
                    keccak256(bytes(data.purchaseId)),
                    data.amount,
                    keccak256(bytes(data.currency)),
                    data.shopId,
                    data.account,
                    data.loyaltyType,
                    data.maxTotal,
                    nonce,
                    data.deadline
                )
            );
    }

    function _emitOpened(
        NewPayment calldata data,
        ILedger.LoyaltyType loyaltyType,
        uint256 paid,
        uint256 fee,
        uint256 shopPoint
    ) private {
        emit PaymentOpened(
            data.paymentId,
            data.shopId,
            data.account,
            data.purchaseId,
            data.amount,
            data.currency,
            loyaltyType,
            paid,
            fee,
            shopPoint
        );
    }

    function _requireStatus(bytes32 paymentId, PaymentStatus actual, PaymentStatus expected) private pure {
        if (actual != expected) revert InvalidPaymentStatus(paymentId, actual);
    }

    /// @dev Escrow -> shop's used total and the fee account. The caller has set the status.
    function _releaseToShop(bytes32 paymentId, Payment storage p) private {
        uint256 paid = p.paid;
        uint256 fee = _fee(paid, p.feeRate);
        emit PaymentClosed(paymentId, paid, fee);
        ledger.releaseToShop(p.loyaltyType, paid, fee);
        shops.recordPayment(p.shopIndex, p.shopPoint);
    }

    /// @dev Escrow -> the payment's user; sets the final status.
    function _refund(bytes32 paymentId, Payment storage p, PaymentStatus finalStatus) private {
        p.status = finalStatus;
        uint256 paid = p.paid;
        uint256 total = paid + _fee(paid, p.feeRate);
        if (finalStatus == PaymentStatus.Refunded) emit PaymentRefunded(paymentId, total);
        else emit PaymentCancelled(paymentId, total);
        ledger.refundFromEscrow(p.account, p.loyaltyType, total);
    }
}
