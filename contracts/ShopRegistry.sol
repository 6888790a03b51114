// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IShopRegistry} from "./interfaces/IShopRegistry.sol";
import {SignedActions} from "./utils/SignedActions.sol";

/// @title ShopRegistry
/// @notice Shops, their reward settings, accumulated totals and withdrawals (settlement).
/// @dev Trust model:
/// - `RELAY_ROLE` submits actions the shop owner signed (EIP-712): register, update, open and
///   close a withdrawal. The relay pays the gas; it cannot act without the owner's signature.
/// - The ledger (purchase rewards) and the payment controller (payments, cancels) update the
///   provided and used totals. Both addresses are fixed at deployment: no role can be granted to
///   move a shop's totals.
/// - The default admin manages roles.
/// Withdrawals are paid off-chain by the operator; this contract only accounts for them.
contract ShopRegistry is IShopRegistry, AccessControl, SignedActions {
    /*//////////////////////////////////////////////////////////////
                                 CONSTANTS
    //////////////////////////////////////////////////////////////*/

    bytes32 public constant RELAY_ROLE = keccak256("RELAY_ROLE");

    /// @notice providePercent is a percentage times 100 (1 % = 100), so 10000 is 100 %.
    uint256 public constant PERCENT_DENOMINATOR = 10_000;

    bytes32 public constant ADD_SHOP_TYPEHASH = keccak256(
        "AddShop(bytes32 shopId,string name,uint256 provideWaitTime,uint256 providePercent,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant UPDATE_SHOP_TYPEHASH = keccak256(
        "UpdateShop(bytes32 shopId,string name,uint256 provideWaitTime,uint256 providePercent,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant OPEN_WITHDRAWAL_TYPEHASH = keccak256(
        "OpenWithdrawal(bytes32 shopId,uint256 amount,address account,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant CLOSE_WITHDRAWAL_TYPEHASH = keccak256(
        "CloseWithdrawal(bytes32 shopId,address account,uint256 nonce,uint256 deadline)"
    );

    /*//////////////////////////////////////////////////////////////
                                  STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev Laid out so each hot operation touches one slot: a payment writes `usedPoint`, a
    /// reward writes `providedPoint` (same slot), a withdrawal writes slot 2.
    struct Shop {
        // slot 0
        address owner;
        uint32 provideWaitTime;
        uint16 providePercent;
        // slot 1
        uint128 providedPoint;
        uint128 usedPoint;
        // slot 2
        uint128 withdrawnPoint;
        uint128 withdrawAmount; // non-zero while a withdrawal is open
        // slot 3
        bytes32 shopId;
        // slot 4
        string name;
    }

    /// @notice The ledger, which records purchase rewards.
    address public immutable ledger;
    /// @notice The payment controller, which records payments and cancels.
    address public immutable paymentController;

    Shop[] private _shops;
    /// @dev shop index + 1, so that zero means "not registered".
    mapping(bytes32 shopId => uint256) private _positions;

    /// @param admin Receives the default admin role.
    /// @param ledger_ The ledger contract (deployed after this one: its address is computed in advance).
    /// @param paymentController_ The payment controller contract (likewise).
    constructor(address admin, address ledger_, address paymentController_) SignedActions("ShopRegistry", "1") {
        ledger = ledger_;
        paymentController = paymentController_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    modifier onlyFrom(address caller) {
        if (msg.sender != caller) revert UnauthorizedCaller(msg.sender);
        _;
    }

    /*//////////////////////////////////////////////////////////////
                          OWNER-SIGNED ACTIONS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function addShop(
        bytes32 shopId,
        string calldata name,
        uint32 provideWaitTime,
        uint16 providePercent,
        address account,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        if (shopId == bytes32(0) || _positions[shopId] != 0) revert ShopAlreadyExists(shopId);
        if (providePercent > PERCENT_DENOMINATOR) revert InvalidShopSettings(providePercent);
        bytes32 structHash = keccak256(
            abi.encode(
                ADD_SHOP_TYPEHASH,
                shopId,
                keccak256(bytes(name)),
                uint256(provideWaitTime),
                uint256(providePercent),
                account,
                _useNonce(account),
                deadline
            )
        );
        _verifySignature(account, structHash, deadline, signature);

        Shop storage shop = _shops.push();
        shop.owner = account;
        shop.provideWaitTime = provideWaitTime;
        shop.providePercent = providePercent;
        shop.shopId = shopId;
        shop.name = name;
        _positions[shopId] = _shops.length;
        emit ShopAdded(shopId, account, name, provideWaitTime, providePercent);
    }

    /// @inheritdoc IShopRegistry
    function updateShop(
        bytes32 shopId,
        string calldata name,
        uint32 provideWaitTime,
        uint16 providePercent,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        if (providePercent > PERCENT_DENOMINATOR) revert InvalidShopSettings(providePercent);
        Shop storage shop = _shopById(shopId);
        address owner = shop.owner;
        bytes32 structHash = keccak256(
            abi.encode(
                UPDATE_SHOP_TYPEHASH,
                shopId,
                keccak256(bytes(name)),
                uint256(provideWaitTime),
                uint256(providePercent),
                owner,
                _useNonce(owner),
                deadline
            )
        );
        _verifySignature(owner, structHash, deadline, signature);

        shop.provideWaitTime = provideWaitTime;
        shop.providePercent = providePercent;
        shop.name = name;
        emit ShopUpdated(shopId, name, provideWaitTime, providePercent);
    }

    /// @inheritdoc IShopRegistry
    function openWithdrawal(
        bytes32 shopId,
        uint256 amount,
        uint256 deadline,
        bytes calldata signature
    ) external onlyRole(RELAY_ROLE) {
        Shop storage shop = _shopById(shopId);
        address owner = shop.owner;
        bytes32 structHash = keccak256(
            abi.encode(OPEN_WITHDRAWAL_TYPEHASH, shopId, amount, owner, _useNonce(owner), deadline)
        );
        _verifySignature(owner, structHash, deadline, signature);

        uint256 open = shop.withdrawAmount;
        if (open != 0) revert WithdrawalAlreadyOpen(shopId, open);
        uint256 available = _withdrawable(shop);
        if (amount == 0 || amount > available) revert InvalidWithdrawalAmount(shopId, amount, available);
        // amount <= available <= usedPoint, which is a uint128.
        shop.withdrawAmount = uint128(amount);
        emit WithdrawalOpened(shopId, owner, amount);
    }

    /// @inheritdoc IShopRegistry
    function closeWithdrawal(bytes32 shopId, uint256 deadline, bytes calldata signature) external onlyRole(RELAY_ROLE) {
        Shop storage shop = _shopById(shopId);
        address owner = shop.owner;
        bytes32 structHash = keccak256(
            abi.encode(CLOSE_WITHDRAWAL_TYPEHASH, shopId, owner, _useNonce(owner), deadline)
        );
        _verifySignature(owner, structHash, deadline, signature);

        uint128 amount = shop.withdrawAmount;
        if (amount == 0) revert NoOpenWithdrawal(shopId);
        // Cannot overflow: withdrawnPoint + amount <= settledPoint <= usedPoint < 2**128 when opened,
        // and withdrawnPoint only grows here.
        uint128 withdrawn = shop.withdrawnPoint + amount;
        shop.withdrawnPoint = withdrawn;
        shop.withdrawAmount = 0;
        emit WithdrawalClosed(shopId, owner, amount, withdrawn);
    }

    /*//////////////////////////////////////////////////////////////
                               ACCOUNTING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function recordProvision(
        bytes32 shopId,
        uint256 purchasePoint
    ) external onlyFrom(ledger) returns (uint256 rewardPoint) {
        Shop storage shop = _shopById(shopId);
        rewardPoint = (purchasePoint * shop.providePercent) / PERCENT_DENOMINATOR;
        uint128 provided = SafeCast.toUint128(shop.providedPoint + rewardPoint);
        shop.providedPoint = provided;
        emit ProvisionRecorded(shopId, rewardPoint, provided);
    }

    /// @inheritdoc IShopRegistry
    function recordPayment(uint32 shopIndex, uint256 point) external onlyFrom(paymentController) {
        Shop storage shop = _shops[shopIndex];
        shop.usedPoint = SafeCast.toUint128(shop.usedPoint + point);
    }

    /// @inheritdoc IShopRegistry
    function recordCancellation(uint32 shopIndex, uint256 point) external onlyFrom(paymentController) {
        Shop storage shop = _shops[shopIndex];
        // Checked subtraction: a cancellation only ever removes a value an earlier payment added.
        shop.usedPoint = SafeCast.toUint128(shop.usedPoint - point);
    }

    /*//////////////////////////////////////////////////////////////
                                   VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IShopRegistry
    function indexOf(bytes32 shopId) external view returns (uint32) {
        return SafeCast.toUint32(_positionOf(shopId) - 1);
    }

    /// @inheritdoc IShopRegistry
    function shopAt(uint32 shopIndex) external view returns (bytes32 shopId, address account) {
        Shop storage shop = _shops[shopIndex];
        return (shop.shopId, shop.owner);
    }

    /// @inheritdoc IShopRegistry
    function shopOf(bytes32 shopId) external view returns (ShopInfo memory info) {
        Shop storage shop = _shopById(shopId);
        info.shopId = shopId;
        info.name = shop.name;
        info.provideWaitTime = shop.provideWaitTime;
        info.providePercent = shop.providePercent;
        info.account = shop.owner;
        info.providedPoint = shop.providedPoint;
        info.usedPoint = shop.usedPoint;
        info.settledPoint = _settled(shop);
        info.withdrawnPoint = shop.withdrawnPoint;
        info.withdrawAmount = shop.withdrawAmount;
        info.withdrawOpen = shop.withdrawAmount != 0;
    }

    /// @inheritdoc IShopRegistry
    function shopCount() external view returns (uint256) {
        return _shops.length;
    }

    /*//////////////////////////////////////////////////////////////
                                 INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _positionOf(bytes32 shopId) private view returns (uint256 position) {
        position = _positions[shopId];
        if (position == 0) revert UnknownShop(shopId);
    }

    function _shopById(bytes32 shopId) private view returns (Shop storage) {
        // Cannot underflow: _positionOf never returns zero.
        unchecked {
            return _shops[_positionOf(shopId) - 1];
        }
    }

    function _settled(Shop storage shop) private view returns (uint256) {
        uint256 used = shop.usedPoint;
        uint256 provided = shop.providedPoint;
        return used > provided ? used - provided : 0;
    }

    function _withdrawable(Shop storage shop) private view returns (uint256) {
        uint256 settled = _settled(shop);
        uint256 withdrawn = shop.withdrawnPoint;
        return settled > withdrawn ? settled - withdrawn : 0;
    }
}
