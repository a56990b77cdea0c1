//! Hot path: per-viewer rewrite and keyframe handling.
