//! The agent-facing gRPC service: one bidirectional session per agent.

use std::time::Duration;

use corral_api::internal::{
    agent_message::Message as FromAgent, agent_service_server::AgentService, AgentMessage,
    MasterMessage,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::actor::{Input, STREAM_CAPACITY};

/// How long an agent may take to send its registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Implements `corral.internal.AgentService`.
pub struct AgentSessions {
    /// The actor's inputs.
    pub inputs: mpsc::Sender<Input>,
}

#[tonic::async_trait]
impl AgentService for AgentSessions {
    type SessionStream = ReceiverStream<Result<MasterMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no registration within 30s"))??;
        let Some(AgentMessage {
            message: Some(FromAgent::Register(register)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of a session must be 'register'",
            ));
        };
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        let (reply_tx, reply_rx) = oneshot::channel();
        self.inputs
            .send(Input::AgentRegister {
                register,
                tx,
                reply: reply_tx,
            })
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?;
        let (agent_id, conn) = reply_rx
            .await
            .map_err(|_| Status::unavailable("master is shutting down"))?
            .map_err(Status::invalid_argument)?;
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(AgentMessage {
                        message: Some(message),
                    })) => {
                        let sent = inputs
                            .send(Input::AgentMessage {
                                agent_id: agent_id.clone(),
                                conn,
                                message,
                            })
                            .await;
                        if sent.is_err() {
                            break;
                        }
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = inputs.send(Input::AgentClosed { agent_id, conn }).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
