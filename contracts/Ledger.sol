// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
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
/// - `PROVIDER_ROLE` (the relay) credits purchase rewards and grants.
/// - `RELAY_ROLE` submits user-signed switches to tokens.
/// - The default admin manages roles and may move the foundation reserve and token fees out.
/// Invariants (PROPERTIES.md): the escrow equals the sum of payments held in escrow; token
/// balances, escrow, fees and reserve add up to the tokens this contract holds.
contract Ledger is ILedger, AccessControl, SignedActions {
    using SafeERC20 for IERC20;

    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");
    bytes32 public constant RELAY_ROLE = keccak256("RELAY_ROLE");

    bytes32 public constant SWITCH_TO_TOKEN_TYPEHASH = keccak256(
        "SwitchToToken(address account,uint256 nonce,uint256 deadline)"
    );

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

    mapping(address account => Account) private _accounts;
    SystemBalances private _pointSystem;
    SystemBalances private _tokenSystem;
    uint256 private _reserve;

    /// @param admin Receives the default admin role.
    /// @param paymentController_ The payment controller (deployed after this contract: its address
    /// is computed in advance and checked by its constructor).
    constructor(
        address admin,
        IERC20 token_,
        ICurrencyRate rates_,
        IShopRegistry shops_,
        address paymentController_
    ) SignedActions("Ledger", "1") {
        token = token_;
        rates = rates_;
        shops = shops_;
        paymentController = paymentController_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
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

    /*//////////////////////////////////////////////////////////////
                              PAYMENT ESCROW
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function holdInEscrow(address account, LoyaltyType loyaltyType, uint256 total) external onlyPaymentController {
        Account storage a = _accounts[account];
        if (a.loyaltyType != loyaltyType) revert WrongLoyaltyType(account, a.loyaltyType);
        _debit(account, a, total);
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
        uint256 rewardPoint = shops.recordProvision(shopId, rates.toPoint(amount, currency));
        if (rewardPoint == 0) revert InvalidAmount(amount);
        (LoyaltyType loyaltyType, uint256 credited) = _creditPoints(account, rewardPoint);
        emit LoyaltyProvided(account, shopId, purchaseId, loyaltyType, credited, rewardPoint);
    }

    /// @inheritdoc ILedger
    function grant(address account, uint256 point) external onlyRole(PROVIDER_ROLE) {
        if (account == address(0) || point == 0) revert InvalidAmount(point);
        (LoyaltyType loyaltyType, uint256 credited) = _creditPoints(account, point);
        emit LoyaltyGranted(account, loyaltyType, credited, point);
    }

    /*//////////////////////////////////////////////////////////////
                            ACCOUNT HOLDERS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ILedger
    function switchToToken() external {
        _switchToToken(msg.sender);
    }

    /// @inheritdoc ILedger
    function switchToTokenFor(
        address account,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        bytes32 structHash = keccak256(abi.encode(SWITCH_TO_TOKEN_TYPEHASH, account, _useNonce(account), deadline));
        _verifySignature(account, structHash, deadline, signature);
        _switchToToken(account);
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

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

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
            amount = rates.pointToToken(amount);
            _takeFromReserve(amount);
        }
        a.balance = SafeCast.toUint248(a.balance + amount);
    }

    function _switchToToken(address account) private {
        Account storage a = _accounts[account];
        if (a.loyaltyType != LoyaltyType.Point) revert WrongLoyaltyType(account, a.loyaltyType);
        uint256 point = a.balance;
        uint256 amount = point == 0 ? 0 : rates.pointToToken(point);
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
