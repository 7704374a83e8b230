//! Connections: how many may be open, and what happens at the cap.
//!
//! - [`limit`]: the cap, by default derived from the open-file limit.
//! - `registry`: every open connection and whether it is idle or busy; at the cap it sheds
//!   an idle one (never-used and once-used connections first, idle longest first), and
//!   refuses the newcomer only when all are busy.
//! - `accept`: the accept loops and one task per connection (timers, shedding, drain).

mod accept;
pub mod limit;
mod registry;

pub use accept::Connections;
pub use limit::ConnectionLimits;
