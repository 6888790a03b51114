// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ICurrencyRate} from "./interfaces/ICurrencyRate.sol";

/// @title CurrencyRate
/// @notice The rate table every conversion in the system goes through, so there is one source of
/// truth for payment math. The point is the base unit: its rate is fixed at 1 (1 point = 1 KRW).
/// @dev Trust model: holders of `RATE_SETTER_ROLE` (an oracle or the operator) set rates, each
/// update bounded in size and frequency; the default admin manages roles and moves only through a
/// delayed two-step transfer. Everyone can read.
contract CurrencyRate is ICurrencyRate, AccessControlDefaultAdminRules {
    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant RATE_SETTER_ROLE = keccak256("RATE_SETTER_ROLE");

    /// @inheritdoc ICurrencyRate
    string public constant POINT = "point";

    bytes32 private constant _POINT_KEY = keccak256(bytes(POINT));

    /// @notice Rates are fixed-point numbers with 18 decimals; the point is the base unit (rate 1).
    uint256 public constant ONE = 1e18;

    /// @notice The largest move of a rate in one update, in basis points of the current rate.
    uint256 public constant MAX_RATE_CHANGE = 1_000; // 10 %
    /// @notice The shortest time between two updates of one currency's rate.
    uint256 public constant RATE_UPDATE_INTERVAL = 1 hours;

    /*//////////////////////////////////////////////////////////////
                                  STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev One slot per currency: the rate and when it was last set.
    struct Rate {
        uint192 value;
        uint64 updatedAt;
    }

    bytes32 private immutable _tokenKey;
    string private _tokenCurrency;
    mapping(bytes32 currencyHash => Rate) private _rates;

    /// @param admin Receives the default admin role.
    /// @param adminDelay How long a transfer of the default admin role waits before it can be accepted.
    /// @param rateSetter Receives the rate-setter role.
    /// @param tokenCurrency_ Currency code of the loyalty token, lower-case (e.g. `the9`).
    constructor(
        address admin,
        uint48 adminDelay,
        address rateSetter,
        string memory tokenCurrency_
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        _tokenCurrency = tokenCurrency_;
        _tokenKey = keccak256(bytes(tokenCurrency_));
        _grantRole(RATE_SETTER_ROLE, rateSetter);
    }

    /*//////////////////////////////////////////////////////////////
                                   VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ICurrencyRate
    function tokenCurrency() external view returns (string memory) {
        return _tokenCurrency;
    }

    /// @inheritdoc ICurrencyRate
    function rateOf(string calldata currency) external view returns (uint256) {
        return _rateOf(currency);
    }

    /// @inheritdoc ICurrencyRate
    function rateUpdatedAt(string calldata currency) external view returns (uint256) {
        return _rates[keccak256(bytes(currency))].updatedAt;
    }

    /// @inheritdoc ICurrencyRate
    function convert(uint256 amount, string calldata from, string calldata to) external view returns (uint256) {
        return Math.mulDiv(amount, _rateOf(from), _rateOf(to));
    }

    /// @inheritdoc ICurrencyRate
    function toPoint(uint256 amount, string calldata currency) external view returns (uint256) {
        return Math.mulDiv(amount, _rateOf(currency), ONE);
    }

    /// @inheritdoc ICurrencyRate
    function toToken(uint256 amount, string calldata currency) external view returns (uint256) {
        if (keccak256(bytes(currency)) == _tokenKey) return amount;
        return Math.mulDiv(amount, _rateOf(currency), _tokenRate());
    }

    /// @inheritdoc ICurrencyRate
    function pointToToken(uint256 points) external view returns (uint256) {
        return Math.mulDiv(points, ONE, _tokenRate());
    }

    /*//////////////////////////////////////////////////////////////
                                  SETTERS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc ICurrencyRate
    function setRates(string[] calldata currencies, uint256[] calldata rates) external onlyRole(RATE_SETTER_ROLE) {
        if (currencies.length != rates.length) revert InvalidRate("");
        for (uint256 i = 0; i < currencies.length; ++i) {
            _setRate(currencies[i], rates[i]);
        }
    }

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _setRate(string calldata currency, uint256 newRate) private {
        bytes32 key = keccak256(bytes(currency));
        if (newRate == 0 || newRate > type(uint192).max || key == _POINT_KEY) revert InvalidRate(currency);
        Rate memory current = _rates[key];
        if (current.value != 0) {
            uint256 nextUpdateAt = uint256(current.updatedAt) + RATE_UPDATE_INTERVAL;
            // slither-disable-next-line timestamp (a rate-update interval is a time bound by design)
            if (block.timestamp < nextUpdateAt) revert RateUpdateTooSoon(currency, nextUpdateAt);
            uint256 change = newRate > current.value ? newRate - current.value : current.value - newRate;
            if (change * 10_000 > uint256(current.value) * MAX_RATE_CHANGE) {
                revert RateChangeTooLarge(currency, current.value, newRate);
            }
        }
        _rates[key] = Rate({value: uint192(newRate), updatedAt: uint64(block.timestamp)});
        emit RateSet(key, currency, newRate);
    }

    function _rateOf(string calldata currency) private view returns (uint256 rate) {
        bytes32 key = keccak256(bytes(currency));
        if (key == _POINT_KEY) return ONE;
        rate = _rates[key].value;
        // slither-disable-next-line incorrect-equality,timestamp (zero is exactly "no rate"; no time involved)
        if (rate == 0) revert UnknownCurrency(currency);
    }

    function _tokenRate() private view returns (uint256 rate) {
        rate = _rates[_tokenKey].value;
        // slither-disable-next-line incorrect-equality,timestamp (zero is exactly "no rate"; no time involved)
        if (rate == 0) revert UnknownCurrency(_tokenCurrency);
    }
}
