// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title LoyaltyToken
/// @notice The loyalty token (symbol `THE9` by default): a plain ERC-20 with EIP-2612 permits and a
/// fixed supply minted once to `holder`. The ledger holds the tokens that back token balances.
contract LoyaltyToken is ERC20, ERC20Permit {
    constructor(
        string memory name,
        string memory symbol,
        address holder,
        uint256 supply
    ) ERC20(name, symbol) ERC20Permit(name) {
        _mint(holder, supply);
    }
}
