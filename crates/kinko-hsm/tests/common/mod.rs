//! Shared helpers: raw cryptoki access to a test token, for checks that must not go through
//! kinko-hsm itself.
#![allow(dead_code, clippy::unwrap_used)]

use cryptoki::context::Pkcs11;
use cryptoki::session::{Session, UserType};
use kinko_hsm::testing::{TestToken, module_path};
use secrecy::SecretString;

/// A raw logged-in session on the test token (the module is already initialized by kinko-hsm).
pub(crate) fn raw_session(token: &TestToken) -> Session {
    let ctx = kinko_hsm::load_module(&module_path()).unwrap();
    let slot = kinko_hsm::find_token(&ctx, &token.label).unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    let pin: &SecretString = &token.user_pin;
    match s.login(UserType::User, Some(pin)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("login: {e}"),
    }
    s
}

pub(crate) fn ctx() -> Pkcs11 {
    kinko_hsm::load_module(&module_path()).unwrap()
}
