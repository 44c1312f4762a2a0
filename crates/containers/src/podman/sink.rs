//! Podman's image storage, for images arriving at the destination.

use std::path::Path;

use ferry_engine::ports::container::ContainerError;

use super::cli::Podman;
use crate::image::ImageStore;

impl ImageStore for Podman {
    fn engine(&self) -> &'static str {
        "Podman"
    }
    fn load(&self, archive: &Path) -> Result<(), ContainerError> {
        Podman::load(self, archive)
    }
    fn tag(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        Podman::tag(self, id, name)
    }
    fn image_is(&self, name: &str, id: &str) -> bool {
        Podman::image_is(self, name, id)
    }
}
