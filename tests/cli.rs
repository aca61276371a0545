//! The `causeway` binary's command line: `check-config` accepts the
//! documented example and refuses a bad file naming the line and key.

use std::process::Command;

#[test]
fn check_config_accepts_the_example_and_names_bad_keys() {
    let bin = env!("CARGO_BIN_EXE_causeway");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/causeway.toml");
    let out = Command::new(bin)
        .args(["check-config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));

    let dir = std::env::temp_dir().join(format!("cw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[users]]\nname = \"a\"\npassword = \"\"\n[primary]\nname = \"p\"\naddress = \"127.0.0.1:3306\"\n[monitor]\nuser = \"m\"\n[[replicas]]\nname = \"r1\"\naddress = \"127.0.0.1:3307\"\nweigth = 2\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":12:") && err.contains("weigth"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
