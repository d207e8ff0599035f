//! kinko-audit
