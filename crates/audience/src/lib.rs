//! Audiences for Jingteng: what the brand and the retailer hand to the media platform
//! so that it can act on the joined view without receiving anyone else's data.
//!
//! - [`rta`]: real-time bidding decisions. The media platform asks "bid for this user,
//!   for campaign X?" with the user's hashed device id; an in-memory index of active
//!   audiences answers yes or no and a bid multiplier, over HTTP/1.1 keep-alive.
//!   Opted-out and deleted users always get no.

pub mod rta;
