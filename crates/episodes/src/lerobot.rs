//! LeRobotDataset v3.0 export (stub while the rest compiles).
pub struct ExportOptions;
pub struct ExportSummary;
pub fn export_lerobot() {}
