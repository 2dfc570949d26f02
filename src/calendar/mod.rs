//! Working time and capacity: what a schedule means for one resource, instant by instant.
