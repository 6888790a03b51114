// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ISignedActions} from "../interfaces/ISignedActions.sol";

/// @title SignedActions
/// @notice EIP-712 verification with per-signer nonces and deadlines, shared by the contracts that
/// act on a user's or shop owner's behalf.
/// @dev An EOA signature is checked with ECDSA first; only when that fails is the signer asked
/// through ERC-1271, so contract wallets are supported without an extra account access for EOAs.
abstract contract SignedActions is ISignedActions, EIP712, Nonces {
    constructor(string memory name, string memory version) EIP712(name, version) {}

    /// @notice The EIP-712 domain separator of this contract.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @dev Reverts unless `signature` is `signer`'s signature of the typed struct `structHash`
    /// and `deadline` has not passed. The caller builds `structHash` with the nonce it consumed.
    function _verifySignature(
        address signer,
        bytes32 structHash,
        uint256 deadline,
        bytes calldata signature
    ) internal view {
        // slither-disable-next-line timestamp (a signature's deadline is a time bound by design)
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        bytes32 digest = _hashTypedDataV4(structHash);
        // slither-disable-next-line unused-return (the error's argument adds nothing to `err`)
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == signer) return;
        if (!SignatureChecker.isValidERC1271SignatureNowCalldata(signer, digest, signature)) {
            revert InvalidSignature(signer);
        }
    }
}
