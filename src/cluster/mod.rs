//! The cluster: full-mesh nodes that replicate the client-location table and topic interest,
//! so a message is forwarded only to the node that needs it. See README "Cluster".

pub mod auth;
pub mod wire;
