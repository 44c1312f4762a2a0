//! The page data plane: how a container's memory moves, with no knowledge of agents,
//! sessions or strategies.
//!
//! - [`stream`]: CRIU dumps into FIFOs whose content is spliced into the page channel
//!   while it dumps (cold migrations, and pre-copy's final copy), and the destination
//!   splices it into page files;
//! - [`precopy`]: the container's memory read and hashed in rounds while it runs, a block
//!   stream of the pages the destination lacks, the destination's content-addressed page
//!   store, and CRIU's final page files rebuilt from references to it;
//! - [`postcopy`]: the source's page pump (CRIU's lazy page server to the two page
//!   channels) and the destination's lazy-pages daemon (userfaultfd).
//!
//! Every function here works on descriptors and streams it is given, so each part is
//! tested over socket pairs and pipes without root.

pub mod postcopy;
pub mod precopy;
pub mod stream;
