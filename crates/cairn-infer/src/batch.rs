//! Dynamic batching: a bounded queue in front of engine instances on their own threads.
//!
//! Requests are stacked along the first dimension until a batch holds `max_batch_rows`
//! rows or the oldest request has waited `max_queue_delay`; with a zero delay a batch is
//! whatever is already waiting, so an idle server adds no latency. The queue is bounded in
//! requests: when it is full `submit` fails at once with `QueueFull` instead of letting
//! latency grow without limit. Each engine instance is owned by one OS thread, so engines
//! never run on the async runtime and need no locking.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::backend::{Backend, BackendError};
use crate::tensor::{Tensor, TensorData};

/// How requests are grouped and how many may wait.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Largest number of rows (first-dimension entries) one engine call receives. A single
    /// request larger than this runs alone.
    pub max_batch_rows: usize,
    /// How long the oldest request may wait for others to join its batch.
    pub max_queue_delay: Duration,
    /// Requests that may wait in the queue before new ones are refused.
    pub queue_capacity: usize,
    /// How long an engine thread keeps polling for work after a batch before it sleeps.
    pub spin: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_rows: 256,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
            spin: Duration::ZERO,
        }
    }
}

/// The outputs of one request and what it cost.
#[derive(Debug)]
pub struct Reply {
    pub outputs: Vec<Tensor>,
    /// Time from submission until its batch started running.
    pub queue_time: Duration,
    /// Rows in the engine call that served this request.
    pub batch_rows: usize,
}

/// Why a request got no outputs.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum InferError {
    #[error("the inference queue is full ({0} requests waiting); retry later")]
    QueueFull(usize),
    #[error("the model is being unloaded")]
    Stopped,
    #[error("{0}")]
    Engine(String),
    /// The engine call ran past its time limit.
    #[error("{0}")]
    Timeout(String),
}

/// Called once per engine call with (rows, compute time); used for metrics.
pub type BatchHook = Arc<dyn Fn(usize, Duration) + Send + Sync>;

struct Job {
    inputs: Vec<Tensor>,
    /// Inference parameters (a JSON object); requests share a batch only with equal ones.
    params: Option<Arc<str>>,
    rows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Reply, InferError>>,
}

/// The queue and the threads serving one loaded model. Dropping it closes the queue; the
/// threads finish what is queued and exit, dropping their engines.
pub struct Batcher {
    tx: Sender<Job>,
    capacity: usize,
    _threads: Vec<JoinHandle<()>>,
}

impl Batcher {
    /// Starts one thread per engine instance. `label` names the threads.
    pub fn start(
        label: &str,
        engines: Vec<Box<dyn Backend>>,
        config: BatchConfig,
        hook: Option<BatchHook>,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.queue_capacity.max(1));
        let mut threads = Vec::with_capacity(engines.len());
        for (i, engine) in engines.into_iter().enumerate() {
            let worker = Worker {
                batchable: engine.signature().batchable(),
                engine,
                rx: rx.clone(),
                config: config.clone(),
                hook: hook.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("infer-{label}-{i}"))
                .spawn(move || worker.run())?;
            threads.push(handle);
        }
        Ok(Batcher {
            tx,
            capacity: config.queue_capacity.max(1),
            _threads: threads,
        })
    }

    /// Requests currently waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Queues a request and waits for its outputs without blocking the async runtime.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Reply, InferError> {
        self.infer_with_params(inputs, None).await
    }

    /// `infer` with inference parameters (a JSON object) for the engine.
    pub async fn infer_with_params(
        &self,
        inputs: Vec<Tensor>,
        params: Option<Arc<str>>,
    ) -> Result<Reply, InferError> {
        let (reply, rx) = oneshot::channel();
        let rows = inputs.first().map_or(1, Tensor::rows);
        let job = Job {
            inputs,
            params,
            rows,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(InferError::QueueFull(self.capacity)),
            Err(TrySendError::Disconnected(_)) => return Err(InferError::Stopped),
        }
        rx.await.unwrap_or(Err(InferError::Stopped))
    }
}

struct Worker {
    engine: Box<dyn Backend>,
    batchable: bool,
    rx: Receiver<Job>,
    config: BatchConfig,
    hook: Option<BatchHook>,
}

impl Worker {
    fn run(mut self) {
        let mut carried: Option<Job> = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match self.next_job() {
                    Some(job) => job,
                    None => return, // queue closed and drained
                },
            };
            let mut batch = vec![first];
            if self.batchable {
                carried = self.fill(&mut batch);
            }
            self.execute(batch);
        }
    }

    /// The next request. Right after a batch the thread polls (yielding the CPU between
    /// polls) for `spin` before it sleeps: a client that sends its next request as soon as
    /// it has a reply then finds the thread awake, instead of paying for a wake-up, which
    /// costs tens of microseconds on a virtual machine.
    fn next_job(&self) -> Option<Job> {
        let until = std::time::Instant::now() + self.config.spin;
        loop {
            match self.rx.try_recv() {
                Ok(job) => return Some(job),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= until {
                return self.rx.recv().ok();
            }
            std::thread::yield_now();
        }
    }

    /// Adds compatible waiting requests to `batch`; returns one that did not fit.
    fn fill(&self, batch: &mut Vec<Job>) -> Option<Job> {
        let mut rows = batch[0].rows;
        let deadline = batch[0].enqueued + self.config.max_queue_delay;
        while rows < self.config.max_batch_rows {
            let next = if self.config.max_queue_delay.is_zero() {
                self.rx.try_recv().ok()
            } else {
                self.rx.recv_deadline(deadline).ok()
            };
            let job = next?;
            if rows + job.rows > self.config.max_batch_rows || !stackable(&batch[0], &job) {
                return Some(job);
            }
            rows += job.rows;
            batch.push(job);
        }
        None
    }

    fn execute(&mut self, mut batch: Vec<Job>) {
        // Requests whose caller has gone (timeout, disconnect) are not computed.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        if batch.len() == 1 {
            if let Some(job) = batch.pop() {
                let result = self
                    .engine
                    .infer_with_params(&job.inputs, job.params.as_deref());
                self.observe(job.rows, started);
                let rows = job.rows;
                finish(job, started, rows, result);
            }
            return;
        }
        let total: usize = batch.iter().map(|j| j.rows).sum();
        let stacked = stack_inputs(&batch, total);
        let params = batch[0].params.clone();
        let result = self.engine.infer_with_params(&stacked, params.as_deref());
        self.observe(total, started);
        match result {
            Ok(outputs)
                if outputs
                    .iter()
                    .all(|o| o.rows() == total && !o.shape.is_empty()) =>
            {
                let mut offset = 0;
                for job in batch {
                    let part = split_outputs(&outputs, offset, job.rows);
                    offset += job.rows;
                    finish(job, started, total, Ok(part));
                }
            }
            // A call that timed out is not retried request by request: each would wait
            // as long again.
            Err(BackendError::Timeout(msg)) => {
                for job in batch {
                    finish(job, started, total, Err(BackendError::Timeout(msg.clone())));
                }
            }
            // Outputs that do not follow the rows (or an engine that refused the stacked
            // batch) fall back to one call per request, so batching never changes results.
            _ => {
                for job in batch {
                    let started = Instant::now();
                    let result = self
                        .engine
                        .infer_with_params(&job.inputs, job.params.as_deref());
                    self.observe(job.rows, started);
                    let rows = job.rows;
                    finish(job, started, rows, result);
                }
            }
        }
    }

    fn observe(&self, rows: usize, started: Instant) {
        if let Some(hook) = &self.hook {
            hook(rows, started.elapsed());
        }
    }
}

fn finish(
    job: Job,
    started: Instant,
    batch_rows: usize,
    result: Result<Vec<Tensor>, BackendError>,
) {
    let reply = result
        .map(|outputs| Reply {
            outputs,
            queue_time: started.saturating_duration_since(job.enqueued),
            batch_rows,
        })
        .map_err(|e| match e {
            BackendError::Timeout(msg) => InferError::Timeout(msg),
            other => InferError::Engine(other.to_string()),
        });
    // The caller may have gone away meanwhile; nothing to do then.
    let _ = job.reply.send(reply);
}

/// Two requests can share an engine call when their parameters are equal and their
/// inputs agree in names, datatypes and every dimension but the first.
fn stackable(a: &Job, b: &Job) -> bool {
    a.params == b.params
        && a.inputs.len() == b.inputs.len()
        && a.inputs.iter().zip(&b.inputs).all(|(x, y)| {
            x.name == y.name
                && x.datatype() == y.datatype()
                && !x.shape.is_empty()
                && x.shape.len() == y.shape.len()
                && x.shape[1..] == y.shape[1..]
        })
}

fn stack_inputs(batch: &[Job], total_rows: usize) -> Vec<Tensor> {
    let first = &batch[0].inputs;
    first
        .iter()
        .enumerate()
        .map(|(i, proto)| {
            let per_row: usize = proto.shape[1..].iter().product();
            let mut data = TensorData::with_capacity(proto.datatype(), total_rows * per_row);
            for job in batch {
                // `stackable` guaranteed equal datatypes, so this cannot fail.
                let _ = data.extend_from(&job.inputs[i].data);
            }
            let mut shape = proto.shape.clone();
            shape[0] = total_rows;
            Tensor {
                name: proto.name.clone(),
                shape,
                data,
            }
        })
        .collect()
}

fn split_outputs(outputs: &[Tensor], row_offset: usize, rows: usize) -> Vec<Tensor> {
    outputs
        .iter()
        .map(|o| {
            let per_row: usize = o.shape[1..].iter().product();
            let mut shape = o.shape.clone();
            shape[0] = rows;
            Tensor {
                name: o.name.clone(),
                shape,
                data: o
                    .data
                    .slice(row_offset * per_row, (row_offset + rows) * per_row),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, ModelSignature, TensorSpec};
    use crate::tensor::DataType;
    use std::sync::Mutex;

    /// Doubles its input and records the batch sizes it saw. With a gate it announces each
    /// call on `entered` and waits for a permit, so tests can pile requests up behind it.
    struct Doubler {
        sig: ModelSignature,
        calls: Arc<Mutex<Vec<usize>>>,
        gate: Option<(Sender<()>, Receiver<()>)>,
    }

    impl Backend for Doubler {
        fn engine(&self) -> &'static str {
            "test"
        }
        fn signature(&self) -> &ModelSignature {
            &self.sig
        }
        fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
            if let Some((entered, permit)) = &self.gate {
                let _ = entered.send(());
                let _ = permit.recv();
            }
            self.calls.lock().unwrap().push(inputs[0].rows());
            let TensorData::Fp32(v) = &inputs[0].data else {
                return Err(BackendError::Inference("want FP32".into()));
            };
            Ok(vec![Tensor {
                name: "y".into(),
                shape: inputs[0].shape.clone(),
                data: TensorData::Fp32(v.iter().map(|x| x * 2.0).collect()),
            }])
        }
    }

    struct Gate {
        entered: Receiver<()>,
        permit: Sender<()>,
    }

    fn gated(calls: Arc<Mutex<Vec<usize>>>) -> (Doubler, Gate) {
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (permit, permit_rx) = crossbeam_channel::unbounded();
        let engine = Doubler {
            sig: sig(),
            calls,
            gate: Some((entered_tx, permit_rx)),
        };
        (engine, Gate { entered, permit })
    }

    fn sig() -> ModelSignature {
        let spec = |n: &str| TensorSpec {
            name: n.into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 2],
        };
        ModelSignature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        }
    }

    fn values(rows: usize, base: f32) -> Vec<f32> {
        (0..rows * 2).map(|i| base + i as f32).collect()
    }

    fn input(rows: usize, base: f32) -> Vec<Tensor> {
        let data = TensorData::Fp32(values(rows, base));
        vec![Tensor::new("x", vec![rows, 2], data).unwrap()]
    }

    async fn wait_queued(batcher: &Batcher, n: usize) {
        while batcher.queued() != n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_requests_are_batched_and_split_back() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (engine, gate) = gated(calls.clone());
        let config = BatchConfig::default();
        let batcher = Arc::new(Batcher::start("t", vec![Box::new(engine)], config, None).unwrap());
        // The first request occupies the engine; the next four wait in the queue and must
        // then run as one call of 1+2+3+4 = 10 rows.
        let b = batcher.clone();
        let first = tokio::spawn(async move { b.infer(input(1, 0.0)).await });
        gate.entered.recv().unwrap();
        let mut waiting = Vec::new();
        for rows in 1..=4 {
            let b = batcher.clone();
            let base = 100.0 * rows as f32;
            waiting.push(tokio::spawn(
                async move { b.infer(input(rows, base)).await },
            ));
            wait_queued(&batcher, rows).await;
        }
        gate.permit.send(()).unwrap();
        gate.permit.send(()).unwrap();
        first.await.unwrap().unwrap();
        for (i, handle) in waiting.into_iter().enumerate() {
            let rows = i + 1;
            let reply = handle.await.unwrap().unwrap();
            assert_eq!(reply.batch_rows, 10);
            let doubled = values(rows, 100.0 * rows as f32)
                .iter()
                .map(|x| x * 2.0)
                .collect();
            assert_eq!(reply.outputs[0].shape, vec![rows, 2]);
            assert_eq!(reply.outputs[0].data, TensorData::Fp32(doubled));
        }
        assert_eq!(*calls.lock().unwrap(), vec![1, 10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_rows_caps_a_batch() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (engine, gate) = gated(calls.clone());
        let config = BatchConfig {
            max_batch_rows: 4,
            ..BatchConfig::default()
        };
        let batcher = Arc::new(Batcher::start("t", vec![Box::new(engine)], config, None).unwrap());
        let mut handles = Vec::new();
        for (i, rows) in [1, 3, 2, 2].into_iter().enumerate() {
            let b = batcher.clone();
            handles.push(tokio::spawn(async move { b.infer(input(rows, 0.0)).await }));
            if i == 0 {
                gate.entered.recv().unwrap();
            } else {
                wait_queued(&batcher, i).await;
            }
        }
        for _ in 0..3 {
            gate.permit.send(()).unwrap();
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        // 3 + 2 would exceed 4 rows, so the waiting requests run as 3 and then 2 + 2.
        assert_eq!(*calls.lock().unwrap(), vec![1, 3, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_with_different_params_never_share_a_call() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (engine, gate) = gated(calls.clone());
        let batcher = Arc::new(
            Batcher::start("t", vec![Box::new(engine)], BatchConfig::default(), None).unwrap(),
        );
        let mut handles = Vec::new();
        let params = [
            None,
            Some("{\"k\":1}"),
            Some("{\"k\":2}"),
            Some("{\"k\":1}"),
        ];
        for (i, p) in params.into_iter().enumerate() {
            let b = batcher.clone();
            let p: Option<Arc<str>> = p.map(Arc::from);
            handles.push(tokio::spawn(async move {
                b.infer_with_params(input(1, 0.0), p).await
            }));
            if i == 0 {
                gate.entered.recv().unwrap();
            } else {
                wait_queued(&batcher, i).await;
            }
        }
        for _ in 0..4 {
            gate.permit.send(()).unwrap();
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        // Without the params check the three waiting requests would be one call of 3.
        assert_eq!(*calls.lock().unwrap(), vec![1, 1, 1, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let (engine, gate) = gated(Arc::default());
        let config = BatchConfig {
            queue_capacity: 2,
            ..BatchConfig::default()
        };
        let batcher = Arc::new(Batcher::start("t", vec![Box::new(engine)], config, None).unwrap());
        let mut handles = Vec::new();
        for i in 0..3 {
            let b = batcher.clone();
            handles.push(tokio::spawn(async move { b.infer(input(1, 0.0)).await }));
            if i == 0 {
                gate.entered.recv().unwrap();
            } else {
                wait_queued(&batcher, i).await;
            }
        }
        // One running (blocked), two queued: the queue is full.
        let refused = batcher.infer(input(1, 0.0)).await.unwrap_err();
        assert_eq!(refused, InferError::QueueFull(2));
        for _ in 0..2 {
            gate.permit.send(()).unwrap();
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spinning_thread_serves_every_request_and_stops_when_dropped() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let engine = Doubler {
            sig: sig(),
            calls: calls.clone(),
            gate: None,
        };
        let config = BatchConfig {
            spin: Duration::from_millis(2),
            ..BatchConfig::default()
        };
        let batcher = Batcher::start("t", vec![Box::new(engine)], config, None).unwrap();
        for i in 0..20 {
            let reply = batcher.infer(input(1, i as f32)).await.unwrap();
            let doubled = values(1, i as f32).iter().map(|x| x * 2.0).collect();
            assert_eq!(reply.outputs[0].data, TensorData::Fp32(doubled));
        }
        drop(batcher);
        assert_eq!(calls.lock().unwrap().len(), 20);
    }

    #[tokio::test]
    async fn engine_errors_reach_the_caller() {
        let engine = Doubler {
            sig: sig(),
            calls: Arc::default(),
            gate: None,
        };
        let config = BatchConfig::default();
        let batcher = Batcher::start("t", vec![Box::new(engine)], config, None).unwrap();
        let bad = vec![Tensor::new("x", vec![1, 2], TensorData::Int64(vec![1, 2])).unwrap()];
        let err = batcher.infer(bad).await.unwrap_err();
        assert_eq!(err, InferError::Engine("want FP32".into()));
    }

    /// Every call blocks on its gate, then times out.
    struct TimesOut {
        sig: ModelSignature,
        calls: Arc<Mutex<Vec<usize>>>,
        entered: Sender<()>,
        permit: Receiver<()>,
    }

    impl Backend for TimesOut {
        fn engine(&self) -> &'static str {
            "test"
        }
        fn signature(&self) -> &ModelSignature {
            &self.sig
        }
        fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
            let _ = self.entered.send(());
            let _ = self.permit.recv();
            self.calls.lock().unwrap().push(inputs[0].rows());
            Err(BackendError::Timeout("too slow".into()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_batch_is_not_retried_request_by_request() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (permit, permit_rx) = crossbeam_channel::unbounded();
        let engine = TimesOut {
            sig: sig(),
            calls: calls.clone(),
            entered: entered_tx,
            permit: permit_rx,
        };
        let batcher = Arc::new(
            Batcher::start("t", vec![Box::new(engine)], BatchConfig::default(), None).unwrap(),
        );
        let spawn = |b: &Arc<Batcher>, base: f32| {
            let b = b.clone();
            tokio::spawn(async move { b.infer(input(1, base)).await })
        };
        let first = spawn(&batcher, 0.0);
        let entered = tokio::task::spawn_blocking(move || entered.recv().map(|_| entered))
            .await
            .unwrap()
            .unwrap();
        // Two more wait behind the blocked call, then run stacked in one call.
        let (second, third) = (spawn(&batcher, 1.0), spawn(&batcher, 2.0));
        wait_queued(&batcher, 2).await;
        // Permits enough for a per-request retry too, so one would show in `calls`.
        for _ in 0..4 {
            permit.send(()).unwrap();
        }
        for h in [first, second, third] {
            let err = h.await.unwrap().unwrap_err();
            assert_eq!(err, InferError::Timeout("too slow".into()));
        }
        drop(entered);
        assert_eq!(*calls.lock().unwrap(), vec![1, 2]);
    }
}
