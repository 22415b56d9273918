//! Tests of the sandbox fault injection.
