//! A small framework on the SDK: runs `--tasks` copies of a command, one
//! per offer that fits, acknowledges their updates, relaunches those that
//! fail, and tears itself down once all have finished.
//!
//! ```sh
//! corral dev &                                   # a local cluster
//! cargo run -p corral-sdk --example sleepers -- --master 127.0.0.1:5050 --tasks 3
//! cargo run -p corral-sdk --example sleepers -- --master zk://127.0.0.1:2181/corral
//! ```

use std::collections::BTreeMap;

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{allocation_role, take, Need};
use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerConfig, SchedulerEvent};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Run {
    Pending,
    Launched,
    Finished,
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let master = arg(&args, "--master", "127.0.0.1:5050");
    let count: usize = arg(&args, "--tasks", "3").parse()?;
    let command = arg(
        &args,
        "--command",
        "echo hello from $MESOS_TASK_ID; sleep 2",
    );
    let need = Need {
        cpus: 0.1,
        mem: 32.0,
        disk: 0.0,
        ports: 0,
    };

    let config = SchedulerConfig::new(master, framework_info("sleepers", &["*"], None));
    let (scheduler, mut events) = Scheduler::start(config)?;
    let mut tasks: BTreeMap<String, Run> = (0..count)
        .map(|i| (format!("sleeper-{i}"), Run::Pending))
        .collect();

    while let Some(event) = events.recv().await {
        match event {
            SchedulerEvent::Subscribed {
                framework_id,
                resubscribed,
                ..
            } => {
                println!("subscribed as {framework_id}");
                if resubscribed {
                    // After a reconnection, ask where our tasks are.
                    let launched = tasks
                        .iter()
                        .filter(|(_, r)| **r == Run::Launched)
                        .map(|(id, _)| (id.clone(), None))
                        .collect();
                    scheduler.reconcile(launched).await?;
                }
            }
            SchedulerEvent::Offers(offers) => {
                for offer in offers {
                    let mut available = Resources::from_vec(
                        &offer
                            .resources
                            .iter()
                            .filter(|r| allocation_role(r) == "*")
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                    let mut launches = Vec::new();
                    for (id, run) in tasks.iter_mut().filter(|(_, r)| **r == Run::Pending) {
                        let Some((resources, left)) = take(&available, &need) else {
                            break;
                        };
                        available = left;
                        *run = Run::Launched;
                        launches.push(v1::TaskInfo {
                            name: id.clone(),
                            task_id: v1::TaskId { value: id.clone() },
                            agent_id: offer.agent_id.clone(),
                            resources,
                            command: Some(v1::CommandInfo {
                                shell: Some(true),
                                value: Some(command.clone()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        });
                    }
                    if launches.is_empty() {
                        scheduler.decline(vec![offer.id], Some(5.0)).await?;
                        continue;
                    }
                    println!("launching {} task(s) on {}", launches.len(), offer.hostname);
                    let launch = v1::offer::Operation {
                        r#type: Some(v1::offer::operation::Type::Launch as i32),
                        launch: Some(v1::offer::operation::Launch {
                            task_infos: launches,
                        }),
                        ..Default::default()
                    };
                    scheduler.accept(vec![offer.id], vec![launch], None).await?;
                }
                if !tasks.values().any(|r| *r == Run::Pending) {
                    scheduler.suppress(vec![]).await?;
                }
            }
            SchedulerEvent::Update(status) => {
                let state = v1::TaskState::try_from(status.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("TASK_UNKNOWN");
                println!("{} {state}", status.task_id.value);
                scheduler.acknowledge(&status).await?;
                let run = tasks.get_mut(&status.task_id.value);
                match (run, v1::TaskState::try_from(status.state)) {
                    (Some(run), Ok(v1::TaskState::TaskFinished)) => *run = Run::Finished,
                    (
                        Some(run),
                        Ok(
                            v1::TaskState::TaskFailed
                            | v1::TaskState::TaskLost
                            | v1::TaskState::TaskError
                            | v1::TaskState::TaskDropped
                            | v1::TaskState::TaskGone,
                        ),
                    ) => {
                        *run = Run::Pending;
                        scheduler.revive(vec![]).await?;
                    }
                    _ => {}
                }
                if tasks.values().all(|r| *r == Run::Finished) {
                    println!("all {count} task(s) finished; tearing down");
                    scheduler.teardown().await?;
                    return Ok(());
                }
            }
            SchedulerEvent::Disconnected { reason } => println!("disconnected: {reason}"),
            SchedulerEvent::Error(message) => {
                return Err(format!("the master refused the framework: {message}").into())
            }
            _ => {}
        }
    }
    Ok(())
}
