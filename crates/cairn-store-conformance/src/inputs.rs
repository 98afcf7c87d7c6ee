//! `log_inputs` and `log_outputs`.

use cairn_core::model::{Dataset, DatasetInput, LifecycleStage, ModelInput, ModelOutput, Run};
use cairn_core::CoreError;

use crate::support::*;
use crate::Store;

fn dataset(name: &str, digest: &str, context: Option<&str>, with_schema: bool) -> DatasetInput {
    DatasetInput {
        tags: context
            .map(|c| vec![tag("mlflow.data.context", c)])
            .unwrap_or_default(),
        dataset: Dataset {
            name: name.into(),
            digest: digest.into(),
            source_type: "s3".into(),
            source: format!("{{\"uri\": \"s3://data/{name}\"}}"),
            schema: with_schema.then(|| "{\"mlflow_colspec\": []}".to_string()),
            profile: with_schema.then(|| "{\"num_rows\": 10}".to_string()),
        },
    }
}

/// Inputs of a run, order-independent: (name, digest, tags sorted).
fn inputs_of(run: &Run) -> Vec<(Dataset, Vec<(String, String)>)> {
    let mut v: Vec<(Dataset, Vec<(String, String)>)> = run
        .inputs
        .dataset_inputs
        .iter()
        .map(|d| (d.dataset.clone(), tag_map(&d.tags).into_iter().collect()))
        .collect();
    v.sort_by(|a, b| (&a.0.name, &a.0.digest).cmp(&(&b.0.name, &b.0.digest)));
    v
}

fn expected(inputs: &[&DatasetInput]) -> Vec<(Dataset, Vec<(String, String)>)> {
    let mut v: Vec<(Dataset, Vec<(String, String)>)> = inputs
        .iter()
        .map(|d| (d.dataset.clone(), tag_map(&d.tags).into_iter().collect()))
        .collect();
    v.sort_by(|a, b| (&a.0.name, &a.0.digest).cmp(&(&b.0.name, &b.0.digest)));
    v
}

/// Dataset inputs with their tags appear on get_run, complete, and are deduplicated when
/// logged again; the same dataset can feed several runs.
pub async fn log_inputs_datasets(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "inputs").await;
    let run = create_run(&*store, exp, "r").await.info.run_id;
    let train = dataset("train", "abc123", Some("training"), true);
    let eval = dataset("eval", "def456", Some("eval"), false);
    let plain = dataset("plain", "0000", None, false);

    store
        .log_inputs(&run, std::slice::from_ref(&train), &[])
        .await
        .must("log_inputs(train)");
    let got = store.get_run(&run).await.must("get_run");
    assert_eq!(
        inputs_of(&got),
        expected(&[&train]),
        "a logged dataset appears on get_run with all fields and its tags"
    );

    store
        .log_inputs(&run, &[train.clone(), eval.clone()], &[])
        .await
        .must("log_inputs(train again + eval)");
    store
        .log_inputs(&run, &[train.clone(), plain.clone()], &[])
        .await
        .must("log_inputs(train a third time + plain)");
    let got = store.get_run(&run).await.must("get_run");
    assert_eq!(
        inputs_of(&got),
        expected(&[&train, &eval, &plain]),
        "re-logged datasets are deduplicated; new ones are added"
    );

    // Another run in the same experiment may use the same dataset.
    let other = create_run(&*store, exp, "other").await.info.run_id;
    store
        .log_inputs(&other, std::slice::from_ref(&train), &[])
        .await
        .must("log_inputs(other run)");
    let got_other = store.get_run(&other).await.must("get_run(other)");
    assert_eq!(inputs_of(&got_other), expected(&[&train]), "shared dataset");
    let got = store.get_run(&run).await.must("get_run");
    assert_eq!(
        inputs_of(&got).len(),
        3,
        "logging for another run does not change this one"
    );

    // Same name, new digest: a different dataset version.
    let train_v2 = dataset("train", "abc999", Some("training"), false);
    store
        .log_inputs(&run, std::slice::from_ref(&train_v2), &[])
        .await
        .must("log_inputs(train v2)");
    let got = store.get_run(&run).await.must("get_run");
    assert_eq!(
        inputs_of(&got),
        expected(&[&train, &train_v2, &eval, &plain]),
        "a new digest is a new dataset"
    );

    store
        .log_inputs(&run, &[], &[])
        .await
        .must("log_inputs with nothing is fine");

    assert_err!(
        store
            .log_inputs(&fresh_id(), std::slice::from_ref(&train), &[])
            .await,
        CoreError::NotFound(_),
        "log_inputs to an unknown run"
    );
    store
        .set_run_lifecycle(&other, LifecycleStage::Deleted, T0 + 1)
        .await
        .must("delete run");
    assert!(
        store
            .log_inputs(&other, std::slice::from_ref(&eval), &[])
            .await
            .is_err(),
        "log_inputs to a deleted run must fail"
    );
    let got_other = store.get_run(&other).await.must("get_run(other)");
    assert_eq!(inputs_of(&got_other), expected(&[&train]), "nothing added");
}

/// Model inputs (log_inputs) and model outputs (log_outputs) appear on get_run,
/// deduplicated.
pub async fn log_inputs_outputs_models(store: Store) {
    prepare(&*store).await;
    let exp = new_experiment(&*store, "model-io").await;
    let run = create_run(&*store, exp, "r").await.info.run_id;
    let m1 = format!("m-{}", fresh_id());
    let m2 = format!("m-{}", fresh_id());
    let m3 = format!("m-{}", fresh_id());

    store
        .log_inputs(
            &run,
            &[],
            &[
                ModelInput {
                    model_id: m1.clone(),
                },
                ModelInput {
                    model_id: m2.clone(),
                },
            ],
        )
        .await
        .must("log_inputs(models)");
    store
        .log_inputs(
            &run,
            &[],
            &[ModelInput {
                model_id: m1.clone(),
            }],
        )
        .await
        .must("log_inputs(models again)");
    let got = store.get_run(&run).await.must("get_run");
    let mut inputs: Vec<String> = got
        .inputs
        .model_inputs
        .iter()
        .map(|m| m.model_id.clone())
        .collect();
    inputs.sort();
    let mut want = vec![m1.clone(), m2.clone()];
    want.sort();
    assert_eq!(inputs, want, "model inputs appear once each");

    store
        .log_outputs(
            &run,
            &[
                ModelOutput {
                    model_id: m3.clone(),
                    step: 5,
                },
                ModelOutput {
                    model_id: m1.clone(),
                    step: 0,
                },
            ],
        )
        .await
        .must("log_outputs");
    store
        .log_outputs(
            &run,
            &[ModelOutput {
                model_id: m3.clone(),
                step: 5,
            }],
        )
        .await
        .must("log_outputs again");
    let got = store.get_run(&run).await.must("get_run");
    let mut outputs: Vec<(String, i64)> = got
        .outputs
        .model_outputs
        .iter()
        .map(|m| (m.model_id.clone(), m.step))
        .collect();
    outputs.sort();
    let mut want = vec![(m3.clone(), 5), (m1.clone(), 0)];
    want.sort();
    assert_eq!(
        outputs, want,
        "model outputs appear once each, with their step"
    );
    assert_eq!(
        got.inputs.model_inputs.len(),
        2,
        "outputs do not change inputs"
    );

    assert_err!(
        store
            .log_outputs(
                &fresh_id(),
                &[ModelOutput {
                    model_id: m1.clone(),
                    step: 0
                }]
            )
            .await,
        CoreError::NotFound(_),
        "log_outputs to an unknown run"
    );
}
