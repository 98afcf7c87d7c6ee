//! MLflow's input limits.
