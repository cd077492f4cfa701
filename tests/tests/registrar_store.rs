//! The mid-registrar's location store at start-up: the default relative path
//! (`data/registrar/location.log`, relative to the working directory) is created with its
//! directory; an unusable path stops the edge with an error naming `registrar.store_path`.
//! Skipped with a message when the edge binary is missing.

use e2e::edge::{Edge, EdgeArgs};
use e2e::ports::{free_port, CORE_IP};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::net::SocketAddr;

fn args() -> EdgeArgs {
    EdgeArgs::udp_core(SocketAddr::from((CORE_IP, free_port())))
}

#[test]
fn registrar_default_store_is_created_under_the_working_directory() {
    let test = "registrar_default_store_is_created_under_the_working_directory";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let edge = Edge::start(&bin, &dir, &args()).unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("data/registrar/location.log");
    assert!(log.is_file(), "{test}: {} not created", log.display());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("edge-location 1\n"), "{test}: {text:?}");
    drop(edge);
}

#[test]
fn registrar_unusable_store_path_is_a_startup_error_naming_the_key() {
    let test = "registrar_unusable_store_path_is_a_startup_error_naming_the_key";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    // A regular file where the store's directory should be.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let store = blocker.join("location.log");
    let args = args().extra(&["--store", store.to_str().unwrap()]);
    match Edge::start(&bin, &dir, &args) {
        Ok(_) => panic!("{test}: edge started with store path {}", store.display()),
        Err(e) => {
            assert!(e.contains("exited during startup"), "{test}: {e}");
            assert!(e.contains("registrar.store_path"), "{test}: {e}");
        }
    }
}
