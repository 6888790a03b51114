// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Currency rates
/// @notice The value of one unit of each currency in points, as a fixed-point number with 18
/// decimals. The point is the base unit (rate 1, fixed; 1 point = 1 KRW, so `krw` has rate 1 too);
/// the loyalty token's currency is a currency like any other. Currency codes are lower-case
/// strings (`krw`, `usd`, `the9`, ...).
///
/// Rate changes are bounded: once a currency has a rate, each update may move it by at most
/// `MAX_RATE_CHANGE` basis points, and no sooner than `RATE_UPDATE_INTERVAL` after the previous
/// update. A stolen rate-setter key can therefore move any rate by at most 10 % per hour, and what
/// a user signed for a payment or a switch bounds what that user is charged whatever the rates do.
interface ICurrencyRate {
    /// @notice Thrown when a currency has no rate. A missing rate is never read as zero.
    /// @param currency The currency code asked for.
    error UnknownCurrency(string currency);

    /// @notice Thrown when a rate of zero or above 2^192 - 1 is set, the fixed point rate is set, or
    /// rates and currencies differ in length.
    /// @param currency The currency whose rate was rejected.
    error InvalidRate(string currency);

    /// @notice Thrown when an update would move a rate by more than `MAX_RATE_CHANGE` basis points.
    /// @param rate The current rate.
    /// @param newRate The rejected rate.
    error RateChangeTooLarge(string currency, uint256 rate, uint256 newRate);

    /// @notice Thrown when a rate is updated sooner than `RATE_UPDATE_INTERVAL` after its previous update.
    /// @param nextUpdateAt The first moment (unix seconds) the rate may change again.
    error RateUpdateTooSoon(string currency, uint256 nextUpdateAt);

    /// @notice Emitted after a currency's rate is set.
    /// @param currencyHash keccak256 of the currency code, for filtering.
    /// @param currency The currency code.
    /// @param rate The new rate: points per unit, 18 decimals.
    event RateSet(bytes32 indexed currencyHash, string currency, uint256 rate);

    /// @notice The currency code of loyalty points (`point`).
    function POINT() external view returns (string memory);

    /// @notice The currency code of the loyalty token (e.g. `the9`).
    function tokenCurrency() external view returns (string memory);

    /// @notice The rate of `currency`; reverts with {UnknownCurrency} if it has none.
    function rateOf(string calldata currency) external view returns (uint256);

    /// @notice Converts `amount` (18 decimals) of currency `from` into currency `to`, rounding down.
    function convert(uint256 amount, string calldata from, string calldata to) external view returns (uint256);

    /// @notice Converts `amount` of `currency` into points, rounding down.
    function toPoint(uint256 amount, string calldata currency) external view returns (uint256);

    /// @notice Converts `amount` of `currency` into loyalty tokens, rounding down.
    function toToken(uint256 amount, string calldata currency) external view returns (uint256);

    /// @notice Converts `points` into loyalty tokens at the current rate, rounding down.
    function pointToToken(uint256 points) external view returns (uint256);

    /// @notice When `currency`'s rate was last set (unix seconds; zero if it has no rate).
    function rateUpdatedAt(string calldata currency) external view returns (uint256);

    /// @notice Sets the rates of `currencies`. Only the rate-setter role. A currency's first rate is
    /// free; later updates are bounded (see above). Rates fit in 192 bits.
    function setRates(string[] calldata currencies, uint256[] calldata rates) external;
}
