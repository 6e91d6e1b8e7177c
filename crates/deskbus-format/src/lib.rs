//! The format stack (placeholder until the format issue lands).
