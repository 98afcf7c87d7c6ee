//! The artifact digest index: record, list by directory, forget.

use cairn_core::model::ArtifactFile;

use crate::support::*;
use crate::Store;

fn file(path: &str, n: i64) -> ArtifactFile {
    ArtifactFile {
        path: path.into(),
        size: n,
        sha256: format!("{n:064x}"),
        etag: (n % 2 == 0).then(|| format!("\"etag-{n}\"")),
        uploaded_at: T0 + n,
    }
}

fn paths(files: &[ArtifactFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

/// Files are listed by directory without catching siblings whose names share a prefix
/// (`dir0`, `dir-x`, `dir.x` sort right around `dir/`), re-recording replaces, and
/// forgetting a directory forgets exactly its files.
pub async fn artifact_index_by_directory(store: Store) {
    let all = [
        "1/r/artifacts/a.txt",
        "1/r/artifacts/dir/b.txt",
        "1/r/artifacts/dir/sub/c.bin",
        "1/r/artifacts/dir-x/d",
        "1/r/artifacts/dir.x",
        "1/r/artifacts/dir0/e",
        "1/rr/artifacts/f",
        "2/r/artifacts/ünïcode ✓.txt",
    ];
    for (i, p) in all.iter().enumerate() {
        store
            .record_artifact(&file(p, i as i64))
            .await
            .must(format!("record {p}"));
    }
    let everything = store.artifact_files("").await.must("list all");
    let mut sorted: Vec<&str> = all.to_vec();
    sorted.sort();
    assert_eq!(paths(&everything), sorted, "everything, in byte order");

    let dir = store
        .artifact_files("1/r/artifacts/dir")
        .await
        .must("list dir");
    let expected: Vec<&str> = all
        .iter()
        .copied()
        .filter(|p| p.starts_with("1/r/artifacts/dir/"))
        .collect();
    assert_eq!(paths(&dir), expected, "only the directory's own files");

    let one = store
        .artifact_files("1/r/artifacts/a.txt")
        .await
        .must("list one file");
    assert_eq!(
        one,
        vec![file("1/r/artifacts/a.txt", 0)],
        "a file lists itself"
    );
    let run = store.artifact_files("1/r").await.must("list run");
    assert_eq!(
        run.len(),
        all.iter().filter(|p| p.starts_with("1/r/")).count(),
        "a run's files, not its prefix-sharing neighbour 1/rr"
    );

    // Re-recording a path replaces its digest.
    store
        .record_artifact(&file("1/r/artifacts/a.txt", 99))
        .await
        .must("re-record");
    let again = store
        .artifact_files("1/r/artifacts/a.txt")
        .await
        .must("list replaced");
    assert_eq!(again, vec![file("1/r/artifacts/a.txt", 99)]);

    let gone = store
        .forget_artifacts("1/r/artifacts/dir")
        .await
        .must("forget dir");
    assert_eq!(gone, expected.len() as u64, "forgot the directory's files");
    let left = store.artifact_files("").await.must("list after forget");
    let mut want: Vec<&str> = sorted
        .iter()
        .copied()
        .filter(|p| !p.starts_with("1/r/artifacts/dir/"))
        .collect();
    want.sort();
    assert_eq!(paths(&left), want, "siblings survive");
    assert_eq!(
        store.forget_artifacts("no/such").await.must("forget none"),
        0
    );
}
