//! (in progress)
use crate::{MediaConfig, MediaError, MediaHandle};

pub(crate) fn start(_config: MediaConfig) -> Result<MediaHandle, MediaError> {
    Err(MediaError::Stopped)
}
