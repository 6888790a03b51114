// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title MockERC1271Wallet
/// @notice Test only: a minimal contract wallet (ERC-1271) controlled by one EOA. It vouches for a
/// hash exactly when `owner` signed that hash, so tests can show that the contracts accept contract
/// wallets and refuse signatures the wallet does not vouch for; and it makes calls for its owner, so
/// tests can show that the contracts act on the contract that calls them, not the EOA behind it.
contract MockERC1271Wallet is IERC1271 {
    /// @notice The EOA whose signatures this wallet accepts.
    address public immutable owner;

    error NotOwner(address caller);

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice Calls `target` with `data` as this wallet; a revert is passed on as it is.
    function execute(address target, bytes calldata data) external returns (bytes memory result) {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        bool ok;
        (ok, result) = target.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecover(hash, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == owner) return IERC1271.isValidSignature.selector;
        return 0xffffffff;
    }
}
