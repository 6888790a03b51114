// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ICurrencyRate} from "./ICurrencyRate.sol";
import {IShopRegistry} from "./IShopRegistry.sol";
import {ISignedActions} from "./ISignedActions.sol";

/// @title Loyalty ledger
/// @notice Point and token balances of every account, the escrow ("temporary account") that holds
/// payments in flight, the fee account, and the foundation's token reserve.
///
/// Each account holds one kind of loyalty, given by its `loyaltyType`: points (0, the default) or
/// loyalty tokens (1). An account can switch from points to tokens once, never back.
///
/// Points exist only in this ledger: they are created by purchase rewards and grants, and leave
/// circulation when spent at a shop (the shop is paid off-chain through settlement) or converted to
/// tokens. Tokens are ERC-20 tokens the ledger holds: `token.balanceOf(ledger)` covers every
/// account, the escrow, the fee account and the foundation reserve.
///
/// Loyalty created outside payments is capped per period (`CAP_PERIOD`, windows aligned to UTC
/// days): purchase rewards (`provide`, counted in reward points) and grants (`grant`, in points)
/// each have an admin-set limit per window. A stolen provider or granter key can create at most
/// that much per day, and a reward also stays within its shop's credit limit (IShopRegistry).
interface ILedger is ISignedActions {
    enum LoyaltyType {
        Point,
        Token
    }

    /// @notice Thrown when an escrow function is called by another address than the payment controller.
    error UnauthorizedCaller(address caller);

    /// @notice Thrown when an account does not hold enough loyalty for an operation.
    error InsufficientBalance(address account, uint256 balance, uint256 required);

    /// @notice Thrown when the foundation's token reserve cannot cover a reward, switch or cancel.
    error InsufficientReserve(uint256 reserve, uint256 required);

    /// @notice Thrown when the fee account cannot return a fee (only after fees were withdrawn).
    error InsufficientFees(uint256 fees, uint256 required);

    /// @notice Thrown when an operation needs the other loyalty type than the account has.
    error WrongLoyaltyType(address account, LoyaltyType loyaltyType);

    /// @notice Thrown for a zero amount or the zero address where a real one is required.
    error InvalidAmount(uint256 amount);

    /// @notice Thrown when a purchase reward would exceed this period's reward cap.
    /// @param rewardPoint The reward asked for, in points.
    /// @param remaining What the cap still allows in this period.
    error RewardCapExceeded(uint256 rewardPoint, uint256 remaining);

    /// @notice Thrown when a grant would exceed this period's grant cap.
    error GrantCapExceeded(uint256 point, uint256 remaining);

    /// @notice Thrown when a cap is set above 2^96 - 1 points.
    error InvalidCap(uint256 limit);

    /// @notice Thrown when a switch to tokens would credit less than the account signed for.
    error SwitchBelowMinimum(address account, uint256 token, uint256 minToken);

    /// @notice Emitted after an account is credited a purchase reward.
    /// @param amount Credited amount in the account's loyalty type.
    /// @param rewardPoint The reward's value in points (what the shop's `providedPoint` grew by).
    event LoyaltyProvided(
        address indexed account,
        bytes32 indexed shopId,
        string purchaseId,
        LoyaltyType loyaltyType,
        uint256 amount,
        uint256 rewardPoint
    );

    /// @notice Emitted after loyalty is granted outside a purchase (promotion, migration).
    event LoyaltyGranted(address indexed account, LoyaltyType loyaltyType, uint256 amount, uint256 point);

    /// @notice Emitted after an account switches from points to tokens.
    event SwitchedToToken(address indexed account, uint256 point, uint256 token);

    /// @notice Emitted after a point payment is refunded to an account that has switched to tokens
    /// since: `point` left the point escrow and `token` was credited from the reserve.
    event RefundConverted(address indexed account, uint256 point, uint256 token);

    /// @notice Emitted after the admin sets the per-period cap of purchase rewards, in points.
    event RewardCapSet(uint256 limit);

    /// @notice Emitted after the admin sets the per-period cap of grants, in points.
    event GrantCapSet(uint256 limit);

    /// @notice Emitted after tokens are deposited into a token account.
    event Deposited(address indexed account, address indexed from, uint256 amount);

    /// @notice Emitted after a token account withdraws tokens to its wallet.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice Emitted after the foundation reserve changes outside payments.
    event ReserveFunded(address indexed from, uint256 amount);
    event ReserveWithdrawn(address indexed to, uint256 amount);

    /// @notice Emitted after token fees leave the fee account.
    event FeesWithdrawn(address indexed to, uint256 amount);

    /// @notice Loyalty type and balance of `account`.
    function accountOf(address account) external view returns (LoyaltyType loyaltyType, uint256 balance);

    /// @notice Balances of the system accounts.
    function escrowOf(LoyaltyType loyaltyType) external view returns (uint256);

    function feesOf(LoyaltyType loyaltyType) external view returns (uint256);

    function reserve() external view returns (uint256);

    /// @notice The per-period cap of purchase rewards and what it still allows in this period, in points.
    function rewardCap() external view returns (uint256 limit, uint256 remaining);

    /// @notice The per-period cap of grants and what it still allows in this period, in points.
    function grantCap() external view returns (uint256 limit, uint256 remaining);

    /// @notice The payment controller, the only caller of the escrow functions.
    function paymentController() external view returns (address);

    /// @notice The shop registry that records purchase rewards.
    function shops() external view returns (IShopRegistry);

    /// @notice The rate table of every conversion (rewards, switches, refunds to switched accounts).
    function rates() external view returns (ICurrencyRate);

    /*  Payment controller only  */

    /// @notice Moves `total` from `account`, whose loyalty type is `loyaltyType`, into escrow.
    function holdInEscrow(address account, LoyaltyType loyaltyType, uint256 total) external;

    /// @notice Completes a payment: `paid + fee` leave escrow; `fee` goes to the fee account;
    /// `paid` is redeemed (points leave circulation, tokens return to the foundation reserve).
    function releaseToShop(LoyaltyType loyaltyType, uint256 paid, uint256 fee) external;

    /// @notice Returns `total` from escrow to `account`.
    function refundFromEscrow(address account, LoyaltyType loyaltyType, uint256 total) external;

    /// @notice Reverses {releaseToShop} for a cancel: `paid + fee` go back into escrow.
    function returnToEscrow(LoyaltyType loyaltyType, uint256 paid, uint256 fee) external;

    /*  Provider (PROVIDER_ROLE) and granter (GRANTER_ROLE)  */

    /// @notice Credits `account` the reward of shop `shopId` for a purchase of `amount` `currency`.
    /// Provider role; within the reward cap and the shop's credit limit.
    function provide(
        address account,
        bytes32 shopId,
        string calldata purchaseId,
        uint256 amount,
        string calldata currency
    ) external;

    /// @notice Credits `account` loyalty worth `point` points outside a purchase. Granter role;
    /// within the grant cap.
    function grant(address account, uint256 point) external;

    /*  Account holders  */

    /// @notice Switches the caller from points to tokens, converting its points at the current rate;
    /// reverts with {SwitchBelowMinimum} if that credits fewer than `minToken` tokens.
    function switchToToken(uint256 minToken) external;

    /// @notice Same as {switchToToken} for `account`, submitted by the relay with its
    /// `SwitchToToken(address account,uint256 minToken,uint256 nonce,uint256 deadline)` signature.
    function switchToTokenFor(address account, uint256 minToken, uint256 deadline, bytes calldata signature) external;

    /// @notice Deposits `amount` tokens from the caller into token account `account`.
    function deposit(address account, uint256 amount) external;

    /// @notice Withdraws `amount` tokens from the caller's token account to its wallet.
    function withdraw(uint256 amount) external;

    /*  Foundation reserve and fees  */

    /// @notice Adds `amount` of the caller's tokens to the foundation reserve.
    function fundReserve(uint256 amount) external;

    /// @notice Sends `amount` tokens of the reserve to `to`. Admin.
    function withdrawReserve(address to, uint256 amount) external;

    /// @notice Sends `amount` token fees to `to`. Admin.
    function withdrawFees(address to, uint256 amount) external;

    /// @notice Sets the per-period cap of purchase rewards, in points. Admin.
    function setRewardCap(uint256 limit) external;

    /// @notice Sets the per-period cap of grants, in points. Admin.
    function setGrantCap(uint256 limit) external;
}
