//! The eventing framework (`corral eventing serve`): deploys and supervises
//! the service's two tiers as Corral tasks — scale each on its own,
//! relaunch on failure, rolling replacement on upgrade. See [`core`] (the
//! pure scheduler), [`server`] (the shell and its REST API) and [`webui`]
//! (its web pages: the tiers and their slots).

pub mod core;
pub mod server;
pub mod webui;
