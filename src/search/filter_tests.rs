//! The serialized shape of [`Filter`]: tombstones in the store keep filters as JSON, so what
//! older versions wrote must read back to the same filter.

use super::*;

#[test]
fn json_written_before_the_field_catalogue_reads_back_the_same() {
    let old = r#"{"product":"x","platform":null,"channel":null,"module":null,"name":null,
        "app_version":null,"release_channel":null,"country":"US","region":null,
        "install_id":"abc","user_id":null,"session_id":null,"fingerprint":null,
        "level":"error,fatal","from_ms":1000,"to_ms":2000,"q":null}"#;
    let filter: Filter = serde_json::from_str(old).unwrap();
    assert_eq!(filter.get(EventField::CountryCode), Some("US"));
    assert_eq!(filter.get(EventField::Platform), None);
    assert_eq!(
        filter,
        Filter {
            from_ms: Some(1000),
            to_ms: Some(2000),
            ..Filter::default()
                .with(EventField::Product, "x")
                .with(EventField::CountryCode, "US")
                .with(EventField::InstallId, "abc")
                .with(EventField::Level, "error,fatal")
        }
    );
    // The erasure tombstone of an install, as written before.
    let erasure = r#"{"product":null,"platform":null,"channel":null,"module":null,"name":null,
        "app_version":null,"release_channel":null,"country":null,"region":null,
        "install_id":"inst-a","user_id":null,"session_id":null,"fingerprint":null,
        "level":null,"from_ms":null,"to_ms":null,"q":null}"#;
    assert_eq!(
        serde_json::from_str::<Filter>(erasure).unwrap(),
        Filter::default().with(EventField::InstallId, "inst-a")
    );
}

#[test]
fn round_trip_by_canonical_names() {
    let filter = Filter {
        q: Some("level:error".into()),
        ..Filter::default()
            .with(EventField::RegionCode, "US-WA")
            .with(EventField::UserId, "u1")
    };
    let json = serde_json::to_value(&filter).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"user_id": "u1", "region_code": "US-WA", "from_ms": null,
            "to_ms": null, "q": "level:error"})
    );
    assert_eq!(serde_json::from_value::<Filter>(json).unwrap(), filter);
}

#[test]
fn present_fields_round_trip_and_must_be_columns() {
    let filter = Filter {
        present: vec![EventField::ErrorCode, EventField::Fingerprint],
        ..Filter::default()
    };
    let json = serde_json::to_value(&filter).unwrap();
    assert_eq!(
        json["present"],
        serde_json::json!(["error_code", "fingerprint"])
    );
    assert_eq!(serde_json::from_value::<Filter>(json).unwrap(), filter);
    assert!(serde_json::from_str::<Filter>(r#"{"present":["nonsense"]}"#).is_err());
}

#[test]
fn unknown_or_repeated_fields_are_refused() {
    // A filter that silently lost a member would match more: refuse instead.
    for bad in [
        r#"{"install":"abc"}"#,
        r#"{"os_version":"17"}"#,
        r#"{"country":"US","country_code":"DE"}"#,
    ] {
        assert!(serde_json::from_str::<Filter>(bad).is_err(), "{bad}");
    }
}
