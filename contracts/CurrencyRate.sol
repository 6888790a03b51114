// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ICurrencyRate} from "./interfaces/ICurrencyRate.sol";

/// @title CurrencyRate
/// @notice The rate table every conversion in the system goes through, so there is one source of
/// truth for payment math. The point is the base unit: its rate is fixed at 1 (1 point = 1 KRW).
/// @dev Trust model: holders of `RATE_SETTER_ROLE` (an oracle or the operator) set rates; the
/// default admin manages roles. Everyone can read.
contract CurrencyRate is ICurrencyRate, AccessControl {
    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant RATE_SETTER_ROLE = keccak256("RATE_SETTER_ROLE");

    /// @inheritdoc ICurrencyRate
    string public constant POINT = "point";

    bytes32 private constant _POINT_KEY = keccak256(bytes(POINT));

    /// @notice Rates are fixed-point numbers with 18 decimals; the point is the base unit (rate 1).
    uint256 public constant ONE = 1e18;

    /*//////////////////////////////////////////////////////////////
                                  STORAGE
    //////////////////////////////////////////////////////////////*/

    bytes32 private immutable _tokenKey;
    string private _tokenCurrency;
    mapping(bytes32 currencyHash => uint256 rate) private _rates;

    /// @param admin Receives the default admin and rate-setter roles.
    /// @param tokenCurrency_ Currency code of the loyalty token, lower-case (e.g. `the9`).
    constructor(address admin, string memory tokenCurrency_) {
        _tokenCurrency = tokenCurrency_;
        _tokenKey = keccak256(bytes(tokenCurrency_));
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(RATE_SETTER_ROLE, admin);
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
            bytes32 key = keccak256(bytes(currencies[i]));
            if (rates[i] == 0 || key == _POINT_KEY) revert InvalidRate(currencies[i]);
            _rates[key] = rates[i];
            emit RateSet(key, currencies[i], rates[i]);
        }
    }

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _rateOf(string calldata currency) private view returns (uint256 rate) {
        bytes32 key = keccak256(bytes(currency));
        if (key == _POINT_KEY) return ONE;
        rate = _rates[key];
        if (rate == 0) revert UnknownCurrency(currency);
    }

    function _tokenRate() private view returns (uint256 rate) {
        rate = _rates[_tokenKey];
        if (rate == 0) revert UnknownCurrency(_tokenCurrency);
    }
}
