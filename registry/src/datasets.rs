//! Dataset folders the studio knows, each with its latest check report.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Row, params};

use crate::{Registry, RegistryError, now, path_text};

/// A dataset folder as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    pub id: i64,
    /// The folder, absolute; it identifies the dataset.
    pub path: PathBuf,
    /// The folder's name.
    pub name: String,
    /// Unix seconds of the first addition and of the latest check.
    pub added: i64,
    pub checked: i64,
    pub check_pass: bool,
    /// The latest check's report (JSON, as the studio saved it).
    pub report: String,
}

const COLUMNS: &str = "id, path, name, added, checked, check_pass, report";

fn dataset_row(row: &Row) -> rusqlite::Result<DatasetRow> {
    Ok(DatasetRow {
        id: row.get(0)?,
        path: PathBuf::from(row.get::<_, String>(1)?),
        name: row.get(2)?,
        added: row.get(3)?,
        checked: row.get(4)?,
        check_pass: row.get(5)?,
        report: row.get(6)?,
    })
}

impl Registry {
    /// Records the check of the dataset at `path` (added if new, its report
    /// replaced if known); returns its id.
    pub fn record_dataset_check(
        &mut self,
        path: &Path,
        check_pass: bool,
        report: &str,
    ) -> Result<i64, RegistryError> {
        let name = path
            .file_name()
            .map_or_else(|| path_text(path), |n| n.to_string_lossy().into());
        let text = path_text(path);
        self.write(|tx| {
            tx.query_row(
                "INSERT INTO datasets (path, name, added, checked, check_pass, report)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)
                 ON CONFLICT (path) DO UPDATE SET
                     checked = excluded.checked, check_pass = excluded.check_pass,
                     report = excluded.report
                 RETURNING id",
                params![text, name, now(), check_pass, report],
                |row| row.get(0),
            )
        })
    }

    /// Every dataset, by name.
    pub fn datasets(&self) -> Result<Vec<DatasetRow>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM datasets ORDER BY name, id");
        let query = || -> rusqlite::Result<Vec<DatasetRow>> {
            let mut stmt = self.reader().prepare(&sql)?;
            stmt.query_map([], dataset_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }

    /// The dataset with this id.
    pub fn dataset(&self, id: i64) -> Result<Option<DatasetRow>, RegistryError> {
        let sql = format!("SELECT {COLUMNS} FROM datasets WHERE id = ?1");
        self.reader()
            .query_row(&sql, [id], dataset_row)
            .optional()
            .map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::concurrency_tests::temp_registry;
    use std::path::Path;

    #[test]
    fn a_recheck_replaces_the_report_and_keeps_the_id() {
        let (_dir, mut reg) = temp_registry();
        let path = Path::new("/data/flowers");
        let id = reg.record_dataset_check(path, false, "{\"a\":1}").unwrap();
        let again = reg.record_dataset_check(path, true, "{\"a\":2}").unwrap();
        assert_eq!(id, again);
        let row = reg.dataset(id).unwrap().unwrap();
        assert_eq!(row.name, "flowers");
        assert!(row.check_pass);
        assert_eq!(row.report, "{\"a\":2}");
        assert_eq!(reg.datasets().unwrap().len(), 1);
        assert!(reg.dataset(id + 1).unwrap().is_none());
    }
}
