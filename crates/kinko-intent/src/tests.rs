use super::*;
use proptest::prelude::*;

fn sample() -> Intent {
    Intent {
        chain: Chain::Ethereum,
        network: Network::new("1").unwrap(),
        kind: IntentKind::Transfer,
        signer: Address::new("0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F").unwrap(),
        asset: native_asset(Chain::Ethereum),
        transfers: vec![Transfer {
            to: Address::new("0x3535353535353535353535353535353535353535").unwrap(),
            amount: Amount::from_u64(1_000_000_000_000_000_000),
            change: false,
        }],
        fee: Fee {
            max: Amount::from_u64(420_000_000_000_000),
            detail: FeeDetail::Ethereum {
                gas_limit: 21_000,
                max_fee_per_gas: Amount::from_u64(20_000_000_000),
                max_priority_fee_per_gas: None,
            },
        },
        nonce: Some(9),
        call: None,
        replay_keys: vec!["nonce:9".into()],
        to_sign: vec![SigningInput::EcdsaSecp256k1 {
            digest: "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53".into(),
            public_key: "024bc2a31265153f07e70e0bab08724e6b85e217f8cd628ceb62974247bb493382".into(),
            index: 0,
        }],
    }
}

/// The canonical bytes and digest of `sample()`, computed independently with Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"))` and `hashlib.sha256` (docs/intents.md).
const SAMPLE_CANONICAL: &str = include_str!("../tests/sample_intent.canonical.json");
const SAMPLE_DIGEST: &str = include_str!("../tests/sample_intent.digest");

#[test]
fn canonical_encoding_matches_independent_python_encoding() {
    let bytes = sample().canonical_bytes().unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        SAMPLE_CANONICAL.trim_end()
    );
    assert_eq!(sample().digest().unwrap().to_hex(), SAMPLE_DIGEST.trim());
}

#[test]
fn canonical_json_sorts_keys_and_rejects_floats() {
    let v: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,2],"c":"x"}}"#).unwrap();
    assert_eq!(
        to_canonical_json(&v).unwrap(),
        br#"{"a":{"c":"x","d":[1,2]},"b":1}"#
    );
    let f: serde_json::Value = serde_json::from_str(r#"{"a":1.5}"#).unwrap();
    assert!(matches!(
        to_canonical_json(&f),
        Err(CanonicalError::Float(_))
    ));
}

#[test]
fn intent_round_trips_through_json_and_keeps_its_digest() {
    let i = sample();
    let json = serde_json::to_string(&i).unwrap();
    let back: Intent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, i);
    assert_eq!(back.digest().unwrap(), i.digest().unwrap());
}

#[test]
fn any_change_changes_the_digest() {
    let base = sample().digest().unwrap();
    let mut i = sample();
    i.transfers[0].amount = Amount::from_u64(1_000_000_000_000_000_001);
    assert_ne!(i.digest().unwrap(), base);
    let mut i = sample();
    i.transfers[0].to = Address::new("0x3535353535353535353535353535353535353536").unwrap();
    assert_ne!(i.digest().unwrap(), base);
    let mut i = sample();
    i.network = Network::new("5").unwrap();
    assert_ne!(i.digest().unwrap(), base);
}

#[test]
fn unknown_fields_are_refused() {
    let mut v = serde_json::to_value(sample()).unwrap();
    v["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<Intent>(v).is_err());
}

#[test]
fn total_out_skips_change_and_detects_overflow() {
    let mut i = sample();
    i.transfers.push(Transfer {
        to: i.signer.clone(),
        amount: Amount::from_u64(5),
        change: true,
    });
    assert_eq!(
        i.total_out().unwrap(),
        Amount::from_u64(1_000_000_000_000_000_000)
    );
    i.transfers.push(Transfer {
        to: i.signer.clone(),
        amount: Amount::MAX,
        change: false,
    });
    assert_eq!(i.total_out(), Err(IntentError::AmountOverflow));
}

#[test]
fn amounts_format_and_parse_exactly() {
    let a = Amount::from_u64(1_500_000_000_000_000_000);
    assert_eq!(a.format_units(18), "1.5");
    assert_eq!(Amount::from_u64(1).format_units(18), "0.000000000000000001");
    assert_eq!(Amount::from_u64(100).format_units(2), "1");
    assert_eq!(Amount::from_u64(123).format_units(0), "123");
    assert_eq!(Amount::parse_units("1.5", 18).unwrap(), a);
    assert_eq!(
        Amount::parse_units("0.000000000000000001", 18).unwrap(),
        Amount::from_u64(1)
    );
    assert!(matches!(
        Amount::parse_units("0.1", 0),
        Err(AmountError::TooPrecise(..))
    ));
    for bad in ["", ".5", "1.", "-1", "1e5", "0x10", " 1", "1 "] {
        assert!(Amount::parse_units(bad, 8).is_err(), "{bad:?}");
    }
    assert!("01".parse::<Amount>().is_err());
    assert!("".parse::<Amount>().is_err());
    let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    assert_eq!(max.parse::<Amount>().unwrap(), Amount::MAX);
    let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    assert!(matches!(
        over.parse::<Amount>(),
        Err(AmountError::Overflow(_))
    ));
}

#[test]
fn addresses_and_networks_are_validated() {
    assert!(Address::new("").is_err());
    assert!(Address::new("a b").is_err());
    assert!(Address::new("x".repeat(129)).is_err());
    assert!(Network::new("Mainnet").is_err());
    assert!(Network::new("mainnet-beta").is_ok());
    assert!(serde_json::from_str::<Network>("\"\"").is_err());
}

proptest! {
    #[test]
    fn amount_decimal_round_trip(hi in any::<u128>(), lo in any::<u128>(), d in 0u8..=30) {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&hi.to_be_bytes());
        b[16..].copy_from_slice(&lo.to_be_bytes());
        let a = Amount::from_be_bytes(b);
        prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        let human = a.format_units(d);
        prop_assert_eq!(Amount::parse_units(&human, d).unwrap(), a);
    }

    #[test]
    fn canonical_json_is_independent_of_input_key_order(keys in proptest::collection::btree_set("[a-z]{1,6}", 1..8)) {
        let fwd: Vec<_> = keys.iter().map(|k| format!("\"{k}\":1")).collect();
        let rev: Vec<_> = keys.iter().rev().map(|k| format!("\"{k}\":1")).collect();
        let a: serde_json::Value = serde_json::from_str(&format!("{{{}}}", fwd.join(","))).unwrap();
        let b: serde_json::Value = serde_json::from_str(&format!("{{{}}}", rev.join(","))).unwrap();
        prop_assert_eq!(to_canonical_json(&a).unwrap(), to_canonical_json(&b).unwrap());
    }
}
