//! The actor's durability barrier: nothing that acknowledges a registry
//! write leaves the master before the writer reports it durable. Time is
//! paused, so "not yet" means "not after the runtime ran out of work".

use std::time::Duration;

use corral_api::internal::{self, master_message::Message as ToAgent};
use corral_api::v1;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::registry::Operation;
use crate::state::test_support;

struct Harness {
    inputs: mpsc::Sender<Input>,
    writes: mpsc::UnboundedReceiver<RegistryWrite>,
}

fn start() -> Harness {
    let master = test_support::master();
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let (writer_tx, writes) = mpsc::unbounded_channel();
    let actor = Actor::new(master, tx.clone()).with_registry_writer(writer_tx);
    tokio::spawn(actor.run(rx, std::future::pending()));
    Harness { inputs: tx, writes }
}

/// Whether `rx` yields within `secs` of (paused, auto-advancing) time.
async fn yields<T>(rx: &mut mpsc::Receiver<T>, secs: u64) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .ok()
        .flatten()
}

async fn register(
    h: &mut Harness,
) -> (String, mpsc::Receiver<Result<MasterMessage, tonic::Status>>) {
    let (agent_tx, agent_rx) = mpsc::channel(64);
    let (reply, answer) = oneshot::channel();
    h.inputs
        .send(Input::AgentRegister {
            register: internal::RegisterAgent {
                agent_info: v1::AgentInfo {
                    hostname: "host1".into(),
                    resources: corral_api::resources::parse("cpus:2;mem:1024").unwrap(),
                    ..Default::default()
                },
                version: "1.11.0".into(),
                endpoint: "127.0.0.1:5051".into(),
                ..Default::default()
            },
            tx: agent_tx,
            reply,
        })
        .await
        .unwrap();
    let (agent_id, _) = answer.await.unwrap().unwrap();
    (agent_id, agent_rx)
}

#[tokio::test(start_paused = true)]
async fn registered_waits_for_the_admission_to_be_durable() {
    let mut h = start();
    let (agent_id, mut agent_rx) = register(&mut h).await;
    let (seq, ops) = h.writes.recv().await.unwrap();
    assert!(
        matches!(&ops[..], [Operation::AdmitAgent(info)] if info.id.as_ref().map(|i| i.value.as_str()) == Some(agent_id.as_str())),
        "{ops:?}"
    );
    assert!(
        yields(&mut agent_rx, 5).await.is_none(),
        "Registered went out before the admission was durable"
    );
    h.inputs.send(Input::Durable { seq }).await.unwrap();
    let msg = yields(&mut agent_rx, 5).await.unwrap().unwrap();
    assert!(
        matches!(msg.message, Some(ToAgent::Registered(_))),
        "{msg:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn mark_agent_gone_is_answered_only_once_durable() {
    let mut h = start();
    let (agent_id, _agent_rx) = register(&mut h).await;
    let (seq, _) = h.writes.recv().await.unwrap();
    h.inputs.send(Input::Durable { seq }).await.unwrap();

    let (tx, mut answer) = oneshot::channel();
    let id = agent_id.clone();
    h.inputs
        .send(Input::With(Box::new(move |m, now| {
            let result = m.mark_agent_gone(&id, now);
            Box::new(move || {
                let _ = tx.send(result);
            })
        })))
        .await
        .unwrap();
    let (seq, ops) = h.writes.recv().await.unwrap();
    assert!(
        matches!(&ops[..], [Operation::MarkGone { agent_id: a, .. }] if *a == agent_id),
        "{ops:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), &mut answer)
            .await
            .is_err(),
        "MARK_AGENT_GONE was answered before the registry held it"
    );
    h.inputs.send(Input::Durable { seq }).await.unwrap();
    assert_eq!(answer.await.unwrap(), Ok(()));
}
