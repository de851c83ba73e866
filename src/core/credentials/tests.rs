use super::secret::{hash_secret, SALT_BYTES};
use super::*;

fn file_with(entries: &str) -> String {
    let hash = hash_secret(b"pw", &[1; SALT_BYTES]).unwrap();
    let key = public_key::encode_ed25519(&[3; 32]);
    entries.replace("HASH", &hash).replace("KEY", &key)
}

const SENSOR: &str = r#"
[[entry]]
name = "sensor"
public_key = "KEY"
ids = ["sensor-*"]
"#;

const GAME: &str = r#"
[[entry]]
name = "game"
secret_hash = "HASH"
ids = ["game-server-*"]
send = { allow = ["lobby-*"] }
publish = { allow = ["game.>"], deny = ["game.admin.>"] }
subscribe = { allow = ["game.>", "_INBOX.>"] }
watch = { allow = [] }
"#;

#[test]
fn a_file_loads_its_entries_with_their_permissions() {
    let creds = Credentials::from_toml_str(&file_with(GAME)).unwrap();
    assert_eq!(creds.len(), 1);
    let entry = creds.entry("game").unwrap();
    assert!(entry.may_register(b"game-server-3"));
    assert!(!entry.may_register(b"lobby-1"));
    let mut grant = Grant::new(Arc::clone(entry));
    assert!(grant.permits_send(b"lobby-2"));
    assert!(!grant.permits_send(b"game-server-4"));
    assert!(grant.permits_publish(b"game.move"));
    assert!(!grant.permits_publish(b"game.admin.kick"));
    assert!(!grant.permits_publish(b"chat.hi"));
    assert!(grant.permits_subscribe(b"_INBOX.abc.*"));
    assert!(!grant.permits_subscribe(b">"));
    assert!(!grant.permits_watch(b"anyone"));
}

#[test]
fn the_unmatchable_hash_is_a_hash_this_build_verifies() {
    assert_eq!(secret::check_hash(UNMATCHABLE_HASH), Ok(()));
}

#[test]
fn a_secret_is_verified_and_a_wrong_one_or_unknown_name_refused_alike() {
    let creds = Credentials::from_toml_str(&file_with(GAME)).unwrap();
    assert_eq!(
        creds.verify_secret("game", b"pw").unwrap().name.as_ref(),
        "game"
    );
    assert_eq!(
        creds.verify_secret("game", b"px").unwrap_err(),
        REFUSED_SECRET
    );
    assert_eq!(
        creds.verify_secret("nobody", b"pw").unwrap_err(),
        REFUSED_SECRET
    );
}

#[test]
fn bad_files_are_refused_naming_the_entry_and_field() {
    let cases = [
        ("[[entry]]\nname = \"a\"\nids = [\"*\"]\n", "neither secret_hash nor public_key"),
        (
            "[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\npublic_key = \"KEY\"\nids = [\"*\"]\n",
            "both secret_hash and public_key",
        ),
        ("[[entry]]\nname = \"a\"\npublic_key = \"ed25519:AAAA\"\nids = [\"*\"]\n", "public_key: \"ed25519:AAAA\": 3 bytes"),
        ("[[entry]]\nname = \"a\"\npublic_key = \"UAAA\"\nids = [\"*\"]\n", "public_key: \"UAAA\""),
        (
            "[[entry]]\nname = \"a\"\npublic_key = \"KEY\"\nids = [\"*\"]\n[[entry]]\nname = \"b\"\npublic_key = \"KEY\"\nids = [\"*\"]\n",
            "entry \"b\": public_key: entry \"a\" has the same key",
        ),
        ("[[entry]]\nname = \"a:b\"\nsecret_hash = \"HASH\"\nids = [\"*\"]\n", "no ':'"),
        ("[[entry]]\nname = \"a\"\nsecret_hash = \"pw\"\nids = [\"*\"]\n", "secret_hash"),
        ("[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\nids = []\n", "ids is empty"),
        (
            "[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\nids = [\"*\"]\npublish = { allow = [\"a.>.b\"] }\n",
            "publish.allow",
        ),
        (
            "[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\nids = [\"*\"]\nsubscribe = { deny = [\"a..b\"] }\n",
            "subscribe.deny",
        ),
        ("[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\nids = [\"*\"]\nsecret = \"x\"\n", "unknown field"),
        ("anonymous = \"guest\"\n", "no entry has"),
        (
            "[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\nids = [\"*\"]\n[[entry]]\nname = \"a\"\nsecret_hash = \"HASH\"\nids = [\"*\"]\n",
            "two entries",
        ),
    ];
    for (text, expected) in cases {
        let err = Credentials::from_toml_str(&file_with(text))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn the_shared_token_opens_and_anything_else_is_refused_without_credentials() {
    let gate = Gate::new(Some(b"tok"), None);
    assert!(matches!(gate.admit(b"tok"), Admission::Open));
    assert!(matches!(gate.admit(b"to"), Admission::Refused(_)));
    assert!(matches!(gate.admit(b"tok2"), Admission::Refused(_)));
    assert!(matches!(gate.admit(b""), Admission::Refused(_)));
    assert!(matches!(Gate::default().admit(b"any"), Admission::Open));
}

#[test]
fn with_credentials_a_token_names_an_entry_and_its_secret() {
    let creds = Arc::new(CredentialsInForce::new(
        Credentials::from_toml_str(&file_with(GAME)).unwrap(),
    ));
    let gate = Gate::new(Some(b"admin-token"), Some(creds));
    assert!(matches!(gate.admit(b"admin-token"), Admission::Open));
    match gate.admit(b"game:p:w") {
        Admission::Verify { name, secret } => assert_eq!((name, secret), ("game", &b"p:w"[..])),
        other => panic!("{other:?}"),
    }
    assert!(matches!(gate.admit(b"no-colon"), Admission::Refused(_)));
    assert!(matches!(gate.admit(b""), Admission::Refused(r) if r.contains("NAME:SECRET")));
}

#[test]
fn an_empty_token_takes_the_anonymous_entry_when_the_file_names_one() {
    let text = format!(
        "anonymous = \"guest\"\n{GAME}\n[[entry]]\nname = \"guest\"\nids = [\"guest-*\"]\npublish = {{ allow = [] }}\n"
    );
    let creds = Arc::new(CredentialsInForce::new(
        Credentials::from_toml_str(&file_with(&text)).unwrap(),
    ));
    let gate = Gate::new(None, Some(creds));
    match gate.admit(b"") {
        Admission::Entry(entry) => {
            assert_eq!(entry.name.as_ref(), "guest");
            assert!(!Grant::new(entry).permits_publish(b"x"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_public_key_entry_is_found_by_name_and_by_key_and_challenged() {
    let nkey = public_key::encode_nkey_user(&[4; 32]);
    let text = format!(
        "{SENSOR}\n[[entry]]\nname = \"nats\"\npublic_key = \"{nkey}\"\nids = [\"*\"]\n{GAME}"
    );
    let creds = Credentials::from_toml_str(&file_with(&text)).unwrap();
    assert!(creds.has_public_keys());
    assert_eq!(creds.entry("sensor").unwrap().public_key, Some([3; 32]));
    assert_eq!(
        creds.entry_by_public_key(&[4; 32]).unwrap().name.as_ref(),
        "nats"
    );
    assert!(creds.entry_by_public_key(&[5; 32]).is_none());
    assert_eq!(
        creds.verify_secret("sensor", b"").unwrap_err(),
        REFUSED_SECRET,
        "a key entry has no secret"
    );
    let gate = Gate::new(None, Some(Arc::new(CredentialsInForce::new(creds))));
    assert!(
        matches!(gate.admit(b"sensor"), Admission::Challenge(Some(e)) if e.name.as_ref() == "sensor")
    );
    // Any other NAME alone is challenged too, with no entry: names cannot be probed.
    assert!(
        matches!(gate.admit(b"game"), Admission::Challenge(None)),
        "a secret entry's name alone: a decoy challenge"
    );
    assert!(matches!(gate.admit(b"nobody"), Admission::Challenge(None)));
    assert!(matches!(gate.admit(b"\xff"), Admission::Challenge(None)));
    let without = Credentials::from_toml_str(&file_with(GAME)).unwrap();
    assert!(!without.has_public_keys());
    let gate = Gate::new(None, Some(Arc::new(CredentialsInForce::new(without))));
    assert!(
        matches!(gate.admit(b"nobody"), Admission::Refused(_)),
        "no key entry at all: a NAME alone is refused at once"
    );
}
