// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title Signed actions
/// @notice Errors shared by every contract that accepts EIP-712 signatures submitted by the relay.
/// Each signed action carries the signer's current nonce (consumed on use) and a deadline; the domain
/// is `{name, version, chainId, verifyingContract}` of the contract that verifies it.
interface ISignedActions {
    /// @notice Thrown when a signature is used after its deadline.
    /// @param deadline The deadline (unix seconds) the signer put in the signed message.
    error ExpiredSignature(uint256 deadline);

    /// @notice Thrown when a signature does not come from the expected signer for this exact message
    /// (wrong key, wrong nonce, wrong chain, wrong contract, or altered fields).
    /// @param signer The account whose signature was expected.
    error InvalidSignature(address signer);
}
