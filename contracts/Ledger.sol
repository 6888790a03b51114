// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ICurrencyRate} from "./interfaces/ICurrencyRate.sol";
import {ILedger} from "./interfaces/ILedger.sol";
import {IShopRegistry} from "./interfaces/IShopRegistry.sol";
import {SignedActions} from "./utils/SignedActions.sol";

/// @title Ledger
/// @notice Loyalty balances, the payment escrow, the fee account and the foundation token reserve.
/// @dev Trust model:
/// - The payment controller, fixed at deployment, moves balances into, within and out of escrow.
///   It is the only way loyalty leaves a user's account without the user calling this contract;
///   no role can be granted to do the same.
/// - `PROVIDER_ROLE` (the relay) credits purchase rewards, at most the reward cap per period and
///   within each shop's credit limit.
/// - `GRANTER_ROLE` (the operator) credits grants, at most the grant cap per period.
/// - `RELAY_ROLE` submits user-signed switches to tokens; the user signs the minimum it accepts.
/// - The default admin (moved only by a delayed two-step transfer) manages roles and caps and may
///   move the foundation reserve and token fees out.
/// Invariants (PROPERTIES.md): the escrow equals the sum of payments held in escrow; token
/// balances, escrow, fees and reserve add up to the tokens this contract holds.
contract Ledger is ILedger, AccessControlDefaultAdminRules, SignedActions {
    using SafeERC20 for IERC20;

    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");
    bytes32 public constant GRANTER_ROLE = keccak256("GRANTER_ROLE");
    bytes32 public constant RELAY_ROLE = keccak256("RELAY_ROLE");

    bytes32 public constant SWITCH_TO_TOKEN_TYPEHASH = keccak256(
        "SwitchToToken(address account,uint256 minToken,uint256 nonce,uint256 deadline)"
    );

    /// @notice Length of a cap window; windows are aligned to UTC days.
    uint256 public constant CAP_PERIOD = 1 days;

    IERC20 public immutable token;
    ICurrencyRate public immutable rates;
    IShopRegistry public immutable shops;
    /// @notice The payment controller: the only caller of the escrow functions.
    address public immutable paymentController;

    /*//////////////////////////////////////////////////////////////
                                  STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev One slot per account: the balance is in the unit of `loyaltyType`.
    struct Account {
        uint248 balance;
        LoyaltyType loyaltyType;
    }

    /// @dev Escrow and fees of one loyalty type share a slot, so a payment's open and close each
    /// write it once.
    struct SystemBalances {
        uint128 escrow;
        uint128 fees;
    }

    /// @dev A limit per window and what the current window has used; one slot.
    struct PeriodCap {
        uint96 limit;
        uint96 used;
        uint64 window;
    }

    mapping(address account => Account) private _accounts;
    // slither-disable-next-line uninitialized-state (starts at zero; written through _system())
    SystemBalances private _pointSystem;
    SystemBalances private _tokenSystem;
    uint256 private _reserve;
    PeriodCap private _rewardCap;
    PeriodCap private _grantCap;

    /// @param admin Receives the default admin and granter roles.
    /// @param adminDelay How long a transfer of the default admin role waits before it can be accepted.
    /// @param relays Receive the relay and provider roles.
    /// @param paymentController_ The payment controller (deployed after this contract: its address
    /// is computed in advance and checked by its constructor).
    constructor(
        address admin,
        uint48 adminDelay,
        address[] memory relays,
        IERC20 token_,
        ICurrencyRate rates_,
        IShopRegistry shops_,
        address paymentController_
    ) AccessControlDefaultAdminRules(adminDelay, admin) SignedActions("Ledger", "1") {
        token = token_;
        rates = rates_;
        shops = shops_;
        // slither-disable-next-line missing-zero-check (LoyaltyPayment's constructor checks the wiring)
        paymentController = paymentController_;
        _grantRole(GRANTER_ROLE, admin);
        for (uint256 i = 0; i < relays.length; ++i) {
            _grantRole(RELAY_ROLE, relays[i]);
            _grantRole(PROVIDER_ROLE, relays[i]);
        }
    }

    modifier onlyPaymentController() {
        if (msg.sender != paymentController) revert UnauthorizedCaller(msg.sender);
        _;
    }

    /*//////////////////////////////////////////////////////////////
                                   VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function accountOf(address account) external view returns (LoyaltyType, uint256) {
        Account storage a = _accounts[account];
        return (a.loyaltyType, a.balance);
    }

    /// @inheritdoc ILedger
    function escrowOf(LoyaltyType loyaltyType) external view returns (uint256) {
        return _system(loyaltyType).escrow;
    }

    /// @inheritdoc ILedger
    function feesOf(LoyaltyType loyaltyType) external view returns (uint256) {
        return _system(loyaltyType).fees;
    }

    /// @inheritdoc ILedger
    function reserve() external view returns (uint256) {
        return _reserve;
    }

    /// @inheritdoc ILedger
    function rewardCap() external view returns (uint256 limit, uint256 remaining) {
        return _capOf(_rewardCap);
    }

    /// @inheritdoc ILedger
    function grantCap() external view returns (uint256 limit, uint256 remaining) {
        return _capOf(_grantCap);
    }

    /*//////////////////////////////////////////////////////////////
                              PAYMENT ESCROW
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function holdInEscrow(address account, LoyaltyType loyaltyType, uint256 total) external onlyPaymentController {
        // The controller read `loyaltyType` from this ledger in the same call.
        _debit(account, _accounts[account], total);
        SystemBalances storage sys = _system(loyaltyType);
        sys.escrow = SafeCast.toUint128(sys.escrow + total);
    }

    /// @inheritdoc ILedger
    function releaseToShop(LoyaltyType loyaltyType, uint256 paid, uint256 fee) external onlyPaymentController {
        SystemBalances storage sys = _system(loyaltyType);
        // Checked: the escrow holds paid + fee of this payment (escrow invariant).
        sys.escrow = uint128(sys.escrow - (paid + fee));
        sys.fees = SafeCast.toUint128(sys.fees + fee);
        // Redeemed tokens go back to the foundation reserve; redeemed points leave circulation.
        // slither-disable-next-line events-maths (the controller's PaymentClosed records this move, P15)
        if (loyaltyType == LoyaltyType.Token) _reserve += paid;
    }

    /// @inheritdoc ILedger
    function refundFromEscrow(address account, LoyaltyType loyaltyType, uint256 total) external onlyPaymentController {
        SystemBalances storage sys = _system(loyaltyType);
        sys.escrow = uint128(sys.escrow - total);
        // Credited in the payment's own type, converted if the account switched to tokens meanwhile.
        _credit(account, loyaltyType, total);
    }

    /// @inheritdoc ILedger
    function returnToEscrow(LoyaltyType loyaltyType, uint256 paid, uint256 fee) external onlyPaymentController {
        SystemBalances storage sys = _system(loyaltyType);
        uint256 fees = sys.fees;
        if (fees < fee) revert InsufficientFees(fees, fee);
        if (loyaltyType == LoyaltyType.Token) {
            uint256 reserve_ = _reserve;
            if (reserve_ < paid) revert InsufficientReserve(reserve_, paid);
            // Cannot underflow: checked just above.
            unchecked {
                // slither-disable-next-line events-maths (the controller's CancelOpened records this move, P15)
                _reserve = reserve_ - paid;
            }
        }
        // Cannot underflow: fees >= fee checked above.
        unchecked {
            sys.fees = uint128(fees - fee);
        }
        sys.escrow = SafeCast.toUint128(sys.escrow + paid + fee);
    }

    /*//////////////////////////////////////////////////////////////
                           REWARDS AND GRANTS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function provide(
        address account,
        bytes32 shopId,
        string calldata purchaseId,
        uint256 amount,
        string calldata currency
    ) external onlyRole(PROVIDER_ROLE) {
        if (account == address(0)) revert InvalidAmount(0);
        // The registry and the rate table are this deployment's own (immutable) and call nothing back.
        // slither-disable-next-line reentrancy-benign,reentrancy-events
        uint256 rewardPoint = shops.recordProvision(shopId, rates.toPoint(amount, currency));
        if (rewardPoint == 0) revert InvalidAmount(amount);
        (uint256 limit, uint256 remaining) = _capOf(_rewardCap);
        if (rewardPoint > remaining) revert RewardCapExceeded(rewardPoint, remaining);
        _useCap(_rewardCap, limit, remaining - rewardPoint);
        (LoyaltyType loyaltyType, uint256 credited) = _creditPoints(account, rewardPoint);
        emit LoyaltyProvided(account, shopId, purchaseId, loyaltyType, credited, rewardPoint);
    }

    /// @inheritdoc ILedger
    function grant(address account, uint256 point) external onlyRole(GRANTER_ROLE) {
        if (account == address(0) || point == 0) revert InvalidAmount(point);
        (uint256 limit, uint256 remaining) = _capOf(_grantCap);
        if (point > remaining) revert GrantCapExceeded(point, remaining);
        _useCap(_grantCap, limit, remaining - point);
        (LoyaltyType loyaltyType, uint256 credited) = _creditPoints(account, point);
        emit LoyaltyGranted(account, loyaltyType, credited, point);
    }

    /*//////////////////////////////////////////////////////////////
                            ACCOUNT HOLDERS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function switchToToken(uint256 minToken) external {
        _switchToToken(msg.sender, minToken);
    }

    /// @inheritdoc ILedger
    function switchToTokenFor(
        address account,
        uint256 minToken,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        bytes32 structHash = keccak256(
            abi.encode(SWITCH_TO_TOKEN_TYPEHASH, account, minToken, _useNonce(account), deadline)
        );
        _verifySignature(account, structHash, deadline, signature);
        _switchToToken(account, minToken);
    }

    /// @inheritdoc ILedger
    function deposit(address account, uint256 amount) external {
        if (amount == 0) revert InvalidAmount(amount);
        Account storage a = _accounts[account];
        if (a.loyaltyType != LoyaltyType.Token) revert WrongLoyaltyType(account, a.loyaltyType);
        a.balance = SafeCast.toUint248(a.balance + amount);
        emit Deposited(account, msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc ILedger
    function withdraw(uint256 amount) external {
        if (amount == 0) revert InvalidAmount(amount);
        Account storage a = _accounts[msg.sender];
        if (a.loyaltyType != LoyaltyType.Token) revert WrongLoyaltyType(msg.sender, a.loyaltyType);
        _debit(msg.sender, a, amount);
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /*//////////////////////////////////////////////////////////////
                          RESERVE AND FEES
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function fundReserve(uint256 amount) external {
        if (amount == 0) revert InvalidAmount(amount);
        _reserve += amount;
        emit ReserveFunded(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc ILedger
    function withdrawReserve(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 reserve_ = _reserve;
        if (amount == 0 || to == address(0)) revert InvalidAmount(amount);
        if (reserve_ < amount) revert InsufficientReserve(reserve_, amount);
        _reserve = reserve_ - amount;
        emit ReserveWithdrawn(to, amount);
        token.safeTransfer(to, amount);
    }

    /// @inheritdoc ILedger
    function withdrawFees(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 fees = _tokenSystem.fees;
        if (amount == 0 || to == address(0)) revert InvalidAmount(amount);
        if (fees < amount) revert InsufficientFees(fees, amount);
        _tokenSystem.fees = uint128(fees - amount);
        emit FeesWithdrawn(to, amount);
        token.safeTransfer(to, amount);
    }

    /// @inheritdoc ILedger
    function setRewardCap(uint256 limit) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _rewardCap.limit = _toCapLimit(limit);
        emit RewardCapSet(limit);
    }

    /// @inheritdoc ILedger
    function setGrantCap(uint256 limit) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _grantCap.limit = _toCapLimit(limit);
        emit GrantCapSet(limit);
    }

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

    /// @dev A cap's limit and what it still allows in the current window (a new window starts unused;
    /// a limit lowered below what the window used allows nothing more).
    function _capOf(PeriodCap storage cap) private view returns (uint256 limit, uint256 remaining) {
        PeriodCap memory c = cap;
        // slither-disable-next-line incorrect-equality,timestamp (day numbers are equal or not; caps are per day)
        uint256 used = c.window == block.timestamp / CAP_PERIOD ? c.used : 0;
        limit = c.limit;
        remaining = limit > used ? limit - used : 0;
    }

    /// @dev Records the current window's use as `limit - remaining`, in one slot write.
    function _useCap(PeriodCap storage cap, uint256 limit, uint256 remaining) private {
        // Both fit: limit < 2^96 and remaining <= limit; the window index is far below 2^64.
        cap.used = uint96(limit - remaining);
        cap.window = uint64(block.timestamp / CAP_PERIOD);
    }

    function _toCapLimit(uint256 limit) private pure returns (uint96) {
        if (limit > type(uint96).max) revert InvalidCap(limit);
        return uint96(limit);
    }

    function _system(LoyaltyType loyaltyType) private view returns (SystemBalances storage) {
        return loyaltyType == LoyaltyType.Point ? _pointSystem : _tokenSystem;
    }

    function _debit(address account, Account storage a, uint256 amount) private {
        uint256 balance = a.balance;
        if (balance < amount) revert InsufficientBalance(account, balance, amount);
        // Cannot underflow: checked just above.
        unchecked {
            a.balance = uint248(balance - amount);
        }
    }

    /// @dev Credits `point` points' worth to `account` in its loyalty type; token accounts are paid
    /// from the foundation reserve at the current rate.
    function _creditPoints(address account, uint256 point) private returns (LoyaltyType, uint256 amount) {
        Account storage a = _accounts[account];
        LoyaltyType loyaltyType = a.loyaltyType;
        amount = point;
        if (loyaltyType == LoyaltyType.Token) {
            amount = rates.pointToToken(point);
            _takeFromReserve(amount);
        }
        a.balance = SafeCast.toUint248(a.balance + amount);
        return (loyaltyType, amount);
    }

    /// @dev Credits `amount` of `loyaltyType` to `account`. If the account has switched to tokens
    /// since, points are converted through the reserve like a switch.
    function _credit(address account, LoyaltyType loyaltyType, uint256 amount) private {
        Account storage a = _accounts[account];
        if (a.loyaltyType != loyaltyType) {
            // Only Point -> Token can differ: switching is one way.
            uint256 point = amount;
            amount = rates.pointToToken(point);
            _takeFromReserve(amount);
            emit RefundConverted(account, point, amount);
        }
        a.balance = SafeCast.toUint248(a.balance + amount);
    }

    function _switchToToken(address account, uint256 minToken) private {
        Account storage a = _accounts[account];
        if (a.loyaltyType != LoyaltyType.Point) revert WrongLoyaltyType(account, a.loyaltyType);
        uint256 point = a.balance;
        uint256 amount = point == 0 ? 0 : rates.pointToToken(point);
        if (amount < minToken) revert SwitchBelowMinimum(account, amount, minToken);
        _takeFromReserve(amount);
        a.loyaltyType = LoyaltyType.Token;
        a.balance = SafeCast.toUint248(amount);
        emit SwitchedToToken(account, point, amount);
    }

    function _takeFromReserve(uint256 amount) private {
        uint256 reserve_ = _reserve;
        if (reserve_ < amount) revert InsufficientReserve(reserve_, amount);
        // Cannot underflow: checked just above.
        unchecked {
            _reserve = reserve_ - amount;
        }
    }
}
