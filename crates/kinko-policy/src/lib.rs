//! kinko-policy
