//! `address_of`: the address shown for a signing key, against published vectors.
#![allow(clippy::unwrap_used, missing_docs)]

use kinko_chain::address_of;
use kinko_intent::Chain;

/// The secp256k1 generator G (the public key of private key 1), SEC1 compressed.
const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

#[test]
fn ethereum_address_of_the_generator_is_the_well_known_one() {
    // Private key 1's address, as every Ethereum library computes it.
    let pk = hex::decode(G).unwrap();
    assert_eq!(
        address_of(Chain::Ethereum, "1", &pk).unwrap(),
        "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    );
}

#[test]
fn bitcoin_p2wpkh_addresses_match_bip173() {
    // BIP-173's P2WPKH example is the generator's key hash on mainnet and testnet.
    let pk = hex::decode(G).unwrap();
    assert_eq!(
        address_of(Chain::Bitcoin, "bitcoin", &pk).unwrap(),
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    );
    assert_eq!(
        address_of(Chain::Bitcoin, "testnet", &pk).unwrap(),
        "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
    );
    assert!(address_of(Chain::Bitcoin, "nonet", &pk).is_err());
}

#[test]
fn solana_address_is_base58_of_the_key() {
    // The system program id is 32 zero bytes: "11111111111111111111111111111111".
    assert_eq!(
        address_of(Chain::Solana, "devnet", &[0u8; 32]).unwrap(),
        "11111111111111111111111111111111"
    );
    assert!(address_of(Chain::Solana, "devnet", &[0u8; 31]).is_err());
}

#[test]
fn malformed_keys_are_errors_not_panics() {
    // x = 2^256 - 1 is not a field element, so no point has it.
    let mut x_too_big = [0xffu8; 33];
    x_too_big[0] = 2;
    for bad in [&[][..], &x_too_big[..], &[0u8; 33][..], &[0u8; 200][..]] {
        assert!(address_of(Chain::Ethereum, "1", bad).is_err());
        assert!(address_of(Chain::Bitcoin, "bitcoin", bad).is_err());
    }
}
