// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Currency rates
/// @notice The value of one unit of each currency in points, as a fixed-point number with 18
/// decimals. The point is the base unit (rate 1, fixed; 1 point = 1 KRW, so `krw` has rate 1 too);
/// the loyalty token's currency is a currency like any other. Currency codes are lower-case
/// strings (`krw`, `usd`, `the9`, ...).
interface ICurrencyRate {
    /// @notice Thrown when a currency has no rate. A missing rate is never read as zero.
    /// @param currency The currency code asked for.
    error UnknownCurrency(string currency);

    /// @notice Thrown when a rate of zero is set, the fixed point rate is set, or rates and
    /// currencies differ in length.
    /// @param currency The currency whose rate was rejected.
    error InvalidRate(string currency);

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

    /// @notice Sets the rates of `currencies`. Only the rate-setter role.
    function setRates(string[] calldata currencies, uint256[] calldata rates) external;
}
