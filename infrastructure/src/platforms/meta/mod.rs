//! What Meta's platforms share: the Graph API's error envelope and usage headers
//! ([`graph`], used by Threads, Facebook Pages and Instagram) and Facebook Login with Page
//! tokens ([`login`], used by Facebook Pages and Instagram), and the publishing quota Instagram
//! and Threads report live ([`quota`]).
pub mod deauthorize;
pub mod errors;
pub mod graph;
pub mod login;
pub mod quota;
