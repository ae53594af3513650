//! Launching: RunTask from the master, the command executor, the executor's
//! environment and volumes, the fetcher, starting the process or container,
//! and the executor registration timeout.

use super::*;

impl Agent {
    /// RunTask: book the task(s), start the executor if needed, queue or
    /// send the launch.
    pub fn run_task(self: &Arc<Self>, msg: internal::RunTask) {
        let fw_info = msg.framework_info;
        let Some(fw_id) = fw_info.id.as_ref().map(|i| i.value.clone()) else {
            tracing::warn!("run task without a framework id dropped");
            return;
        };
        let (queued, tasks): (Queued, Vec<TaskInfo>) = match (msg.task, msg.task_group) {
            (_, Some(group)) => {
                let tasks = group.tasks.clone();
                (Queued::Group(group), tasks)
            }
            (Some(task), None) => (Queued::Task(task.clone()), vec![task]),
            (None, None) => {
                tracing::warn!(framework_id = %fw_id, "run task without task or task group dropped");
                return;
            }
        };
        if tasks.is_empty() {
            tracing::warn!(framework_id = %fw_id, "run task with an empty task group dropped");
            return;
        }
        let is_group = matches!(queued, Queued::Group(_));
        let queued = self.with_docker_volume_binds(queued);
        let mut st = lock(&self.state);
        let Some(agent_id) = st.agent_id.clone() else {
            tracing::warn!(framework_id = %fw_id, "run task before registration dropped");
            return;
        };

        // Which executor, and how it runs.
        let (info, kind) = match msg.executor_info {
            Some(mut e) => {
                e.framework_id
                    .get_or_insert_with(|| ids::framework_id(fw_id.clone()));
                let kind = if e.r#type == Some(executor_info::Type::Default as i32)
                    || (is_group && e.command.is_none())
                {
                    ExecutorKind::Default
                } else {
                    ExecutorKind::Custom
                };
                (e, kind)
            }
            None if is_group => {
                drop(st);
                self.fail_unlaunched(&fw_info, &tasks, None, "task group without an executor");
                return;
            }
            None => (
                self.command_executor_info(&fw_id, &tasks[0]),
                ExecutorKind::Command,
            ),
        };
        let ex_id = info.executor_id.value.clone();

        let invalid = paths::validate_id("framework", &fw_id)
            .and_then(|_| paths::validate_id("executor", &ex_id))
            .and_then(|_| {
                tasks
                    .iter()
                    .try_for_each(|t| paths::validate_id("task", &t.task_id.value))
            });
        let invalid = invalid
            .and_then(|_| self.check_containers(&info, kind, &tasks))
            .and_then(|_| self.check_volumes(&st, &info, &tasks));
        if let Err(reason) = invalid {
            drop(st);
            self.fail_unlaunched(&fw_info, &tasks, Some(&info.executor_id), &reason);
            return;
        }

        let fw = st
            .frameworks
            .entry(fw_id.clone())
            .or_insert_with(|| Framework {
                info: fw_info.clone(),
                terminating: false,
                executors: BTreeMap::new(),
                completed_executors: VecDeque::new(),
            });
        if fw.terminating {
            tracing::warn!(framework_id = %fw_id, "framework is shutting down, dropping tasks");
            return;
        }
        fw.info = fw_info.clone();
        if let Some(dup) = tasks.iter().find(|t| fw.has_task(&t.task_id.value)) {
            tracing::warn!(framework_id = %fw_id, task_id = %dup.task_id.value, "task id already in use, dropping launch");
            return;
        }

        // A finished run with the same executor id makes way for a new one.
        if fw
            .executors
            .get(&ex_id)
            .is_some_and(|e| e.phase == ExecutorPhase::Terminated)
        {
            if let Some(mut old) = fw.executors.remove(&ex_id) {
                let leftovers: Vec<Task> = std::mem::take(&mut old.tasks).into_values().collect();
                old.completed_tasks.extend(leftovers);
                fw.completed_executors.push_back(old);
            }
        }
        if fw
            .executors
            .get(&ex_id)
            .is_some_and(|e| e.phase == ExecutorPhase::Terminating)
        {
            let lost = if fw.partition_aware() {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            // Book the tasks so their updates are recorded, then fail them.
            for t in &tasks {
                let status = Self::agent_status(
                    &st,
                    &t.task_id,
                    Some(&info.executor_id),
                    lost,
                    task_status::Reason::ExecutorTerminated,
                    "executor is shutting down",
                );
                self.emit(&mut st, &fw_id, status);
            }
            return;
        }

        let started_now = !fw.executors.contains_key(&ex_id);
        if started_now {
            match self.start_executor(&agent_id.value, &fw_info, info.clone(), kind, &tasks) {
                Ok(ex) => {
                    fw.executors.insert(ex_id.clone(), ex);
                }
                Err(reason) => {
                    tracing::error!(framework_id = %fw_id, executor_id = %ex_id, error = %reason, "failed to launch executor");
                    if fw.executors.is_empty() {
                        st.frameworks.remove(&fw_id);
                    }
                    drop(st);
                    self.fail_unlaunched(&fw_info, &tasks, Some(&info.executor_id), &reason);
                    return;
                }
            }
        }
        let Some(ex) = fw.executors.get_mut(&ex_id) else {
            return;
        };
        if !started_now && ex.docker_container.is_none() {
            // Volumes of the new tasks go into the running container's sandbox.
            let wanted = volumes::volumes_of(tasks.iter().flat_map(|t| t.resources.iter()));
            match self.mount_volumes(&ex.directory, &wanted, &ex.volume_mounts) {
                Ok(mut mounted) => ex.volume_mounts.append(&mut mounted),
                Err(reason) => {
                    let executor_id = ex.info.executor_id.clone();
                    drop(st);
                    self.fail_unlaunched(&fw_info, &tasks, Some(&executor_id), &reason);
                    return;
                }
            }
        }
        if !started_now {
            // More tasks in a running container: it grows by their resources.
            for t in &tasks {
                ex.limits.add(Limits::of(&t.resources));
            }
            if let Some(cg) = ex.cgroup.as_mut() {
                if let Some(grown) = self.config.isolation.cgroup_spec(
                    &self.config.cgroups_root,
                    &ex.container_id,
                    ex.limits.cpus,
                    ex.limits.mem_mb,
                ) {
                    *cg = grown.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = grown.update_limits() {
                            tracing::warn!(error = %e, "cannot update the container's limits");
                        }
                    });
                }
            }
        }
        let task_executor = (kind != ExecutorKind::Command).then(|| info.executor_id.clone());
        for t in &tasks {
            ex.tasks.insert(
                t.task_id.value.clone(),
                make_task(t, &fw_id, task_executor.clone(), &agent_id),
            );
        }
        if ex.checkpoint {
            if !started_now {
                // The container record holds its mounts.
                let ex = &*ex;
                self.checkpoint_executor(&agent_id.value, &fw_info, ex);
            }
            for t in &tasks {
                self.checkpoint_task(&st, &fw_id, &t.task_id.value);
            }
        }
        let Some(ex) = st
            .frameworks
            .get_mut(&fw_id)
            .and_then(|f| f.executors.get_mut(&ex_id))
        else {
            return;
        };
        if ex.phase == ExecutorPhase::Running && ex.events.is_some() {
            let sent = ex.send(launch_event(queued.clone()));
            if sent {
                tracing::info!(framework_id = %fw_id, executor_id = %ex_id, tasks = tasks.len(), "launching on subscribed executor");
                return;
            }
            ex.events = None;
        }
        tracing::info!(framework_id = %fw_id, executor_id = %ex_id, tasks = tasks.len(), "queued until the executor subscribes");
        ex.queued.push(queued);
    }

    /// TASK_FAILED (container launch failed) for tasks that never got an
    /// executor; they are not booked.
    pub(crate) fn fail_unlaunched(
        &self,
        fw_info: &FrameworkInfo,
        tasks: &[TaskInfo],
        ex: Option<&ExecutorId>,
        reason: &str,
    ) {
        let Some(fw_id) = fw_info.id.clone() else {
            return;
        };
        let st = lock(&self.state);
        for t in tasks {
            let status = Self::agent_status(
                &st,
                &t.task_id,
                ex,
                TaskState::TaskFailed,
                task_status::Reason::ContainerLaunchFailed,
                reason,
            );
            tracing::warn!(framework_id = %fw_id.value, task_id = %t.task_id.value, reason, "task failed to launch");
            let forward = lock(&self.sum).update(&fw_id, ex.cloned(), status, Instant::now());
            if let Ok(Some(msg)) = forward {
                self.send_to_master(agent_message::Message::StatusUpdate(msg));
            }
        }
        self.sum_wake.notify_one();
    }

    pub(crate) fn command_executor_info(&self, fw_id: &str, task: &TaskInfo) -> ExecutorInfo {
        let command = task.command.as_ref();
        let shown = command.and_then(|c| c.value.clone()).unwrap_or_default();
        let launcher = self.config.launcher.display().to_string();
        ExecutorInfo {
            executor_id: ids::executor_id(task.task_id.value.clone()),
            framework_id: Some(ids::framework_id(fw_id)),
            command: Some(v1::CommandInfo {
                value: Some(launcher.clone()),
                arguments: vec![launcher, "executor".into()],
                shell: Some(false),
                user: command.and_then(|c| c.user.clone()),
                ..Default::default()
            }),
            name: Some(format!(
                "Command Executor (Task: {}) (Command: sh -c '{}')",
                task.task_id.value, shown
            )),
            source: Some(task.task_id.value.clone()),
            labels: task.labels.clone(),
            ..Default::default()
        }
    }

    pub(crate) fn executor_env(
        &self,
        agent_id: &str,
        fw: &FrameworkInfo,
        ex: &Executor,
    ) -> Vec<(String, String)> {
        let checkpoint = fw.checkpoint.unwrap_or(false);
        let dir = ex.directory.display().to_string();
        let mut env = vec![
            (
                "MESOS_FRAMEWORK_ID".into(),
                fw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
            ),
            (
                "MESOS_EXECUTOR_ID".into(),
                ex.info.executor_id.value.clone(),
            ),
            ("MESOS_DIRECTORY".into(), dir.clone()),
            ("MESOS_SANDBOX".into(), dir),
            ("MESOS_AGENT_ENDPOINT".into(), self.config.endpoint()),
            (
                "MESOS_CHECKPOINT".into(),
                if checkpoint { "1" } else { "0" }.into(),
            ),
            (
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
                stout::format_duration(ex.grace_period(self.config.executor_shutdown_grace_period)),
            ),
            ("MESOS_SLAVE_ID".into(), agent_id.into()),
            ("MESOS_AGENT_ID".into(), agent_id.into()),
            (
                "MESOS_HTTP_COMMAND_EXECUTOR".into(),
                if ex.kind == ExecutorKind::Command {
                    "1"
                } else {
                    "0"
                }
                .into(),
            ),
            (
                "CORRAL_EXECUTOR_KIND".into(),
                match ex.kind {
                    ExecutorKind::Command => "command",
                    ExecutorKind::Default => "default",
                    ExecutorKind::Custom => "custom",
                }
                .into(),
            ),
        ];
        if checkpoint {
            env.push((
                "MESOS_RECOVERY_TIMEOUT".into(),
                stout::format_duration(self.config.recovery_timeout),
            ));
            // Mesos: half the re-registration timeout, so a recovered agent
            // sees its executors again in time.
            let backoff =
                (self.config.executor_reregistration_timeout / 2).max(Duration::from_millis(10));
            env.push((
                "MESOS_SUBSCRIPTION_BACKOFF_MAX".into(),
                stout::format_duration(backoff),
            ));
        }
        env.push(("MESOS_CONTAINER_ID".into(), ex.container_id.clone()));
        if let (Some(name), Some(socket)) = (&ex.docker_container, &self.config.docker_socket) {
            env.push(("MESOS_CONTAINER_NAME".into(), name.clone()));
            env.push(("CORRAL_DOCKER_SOCKET".into(), socket.display().to_string()));
            env.push(("CORRAL_AGENT_ID".into(), agent_id.into()));
        }
        env
    }

    /// Refuses containers this agent cannot run.
    pub(crate) fn check_containers(
        &self,
        info: &ExecutorInfo,
        kind: ExecutorKind,
        tasks: &[TaskInfo],
    ) -> Result<(), String> {
        use v1::container_info::Type as CType;
        if info
            .container
            .as_ref()
            .is_some_and(|c| c.r#type == CType::Docker as i32)
        {
            return Err(
                "executors in Docker containers are not supported; give the task a DOCKER \
                 ContainerInfo and no executor"
                    .into(),
            );
        }
        for t in tasks {
            let Some(c) = &t.container else {
                continue;
            };
            if c.r#type == CType::Docker as i32 {
                if kind != ExecutorKind::Command {
                    return Err(format!(
                        "task '{}' has a DOCKER ContainerInfo; only command tasks (no executor) \
                         run in Docker",
                        t.task_id.value
                    ));
                }
                if self.config.docker_socket.is_none() {
                    return Err(format!(
                        "task '{}' needs the docker containerizer, which is not enabled \
                         (--containerizers=docker,mesos)",
                        t.task_id.value
                    ));
                }
                if c.docker.as_ref().is_none_or(|d| d.image.trim().is_empty()) {
                    return Err(format!(
                        "task '{}' has a DOCKER ContainerInfo without an image",
                        t.task_id.value
                    ));
                }
            }
            if let Some(r) = &c.rlimit_info {
                crate::launcher::validate_rlimits(&rlimits_of(r))
                    .map_err(|e| format!("task '{}': {e}", t.task_id.value))?;
            }
        }
        Ok(())
    }

    /// Refuses tasks whose persistent volumes this agent does not have, and
    /// volumes that cannot be placed in the container.
    pub(crate) fn check_volumes(
        &self,
        st: &State,
        info: &ExecutorInfo,
        tasks: &[TaskInfo],
    ) -> Result<(), String> {
        let docker = tasks.iter().any(|t| {
            t.container
                .as_ref()
                .is_some_and(|c| c.r#type == v1::container_info::Type::Docker as i32)
        });
        let wanted = volumes::volumes_of(
            info.resources
                .iter()
                .chain(tasks.iter().flat_map(|t| t.resources.iter())),
        );
        for v in &wanted {
            volumes::validate(v)?;
            let known = st.total.as_slice().iter().any(|r| {
                corral_api::operations::persistence_id(r) == Some(v.persistence_id.as_str())
                    && corral_api::resources::reservation_role(r) == v.role
            });
            if !known {
                return Err(format!(
                    "persistent volume '{}' of role '{}' does not exist on this agent (CREATE it \
                     first, and launch on an offer that holds it)",
                    v.persistence_id, v.role
                ));
            }
            if !docker {
                volumes::mount_point(Path::new("/"), v).map_err(|e| e.to_string())?;
            }
            if v.hdfs {
                self.hdfs.check_usable(v)?;
            }
        }
        Ok(())
    }

    /// A Docker task's persistent volumes become binds of its container
    /// (`<volume dir>:<container_path>[:ro]`; a relative container_path is
    /// under the sandbox's mount point in the container).
    pub(crate) fn with_docker_volume_binds(&self, queued: Queued) -> Queued {
        let Queued::Task(mut task) = queued else {
            return queued;
        };
        let wanted = volumes::volumes_of(&task.resources);
        if let Some(c) = task
            .container
            .as_mut()
            .filter(|c| c.r#type == v1::container_info::Type::Docker as i32)
        {
            for v in wanted {
                c.volumes.push(v1::Volume {
                    mode: if v.read_only {
                        v1::volume::Mode::Ro
                    } else {
                        v1::volume::Mode::Rw
                    } as i32,
                    container_path: v.container_path.clone(),
                    host_path: Some(
                        volumes::volume_dir(&self.config.work_dir, &v.role, &v.persistence_id)
                            .display()
                            .to_string(),
                    ),
                    ..Default::default()
                });
            }
        }
        Queued::Task(task)
    }

    /// Bind-mounts the volumes not yet mounted (`already`) into a sandbox;
    /// on failure nothing new stays mounted.
    pub(crate) fn mount_volumes(
        &self,
        sandbox: &Path,
        wanted: &[VolumeUse],
        already: &[PathBuf],
    ) -> Result<Vec<PathBuf>, String> {
        let mut mounted = Vec::new();
        for v in wanted {
            let result = volumes::mount_point(sandbox, v).and_then(|target| {
                if already.contains(&target) || mounted.contains(&target) {
                    return Ok(None);
                }
                let source = volumes::volume_dir(&self.config.work_dir, &v.role, &v.persistence_id);
                volumes::bind_mount(&source, sandbox, &target, v.read_only)?;
                tracing::info!(
                    role = %v.role,
                    persistence_id = %v.persistence_id,
                    target = %target.display(),
                    read_only = v.read_only,
                    "mounted persistent volume"
                );
                Ok(Some(target))
            });
            match result {
                Ok(Some(t)) => mounted.push(t),
                Ok(None) => {}
                Err(e) => {
                    self.unmount_volumes(&mounted);
                    return Err(format!(
                        "cannot mount persistent volume '{}': {e}",
                        v.persistence_id
                    ));
                }
            }
        }
        Ok(mounted)
    }

    /// Detaches volume mounts (most recent first); the data stays.
    pub(crate) fn unmount_volumes(&self, mounts: &[PathBuf]) {
        for m in mounts.iter().rev() {
            match volumes::unmount(m) {
                Ok(()) => tracing::info!(target = %m.display(), "unmounted persistent volume"),
                Err(e) => {
                    tracing::error!(target = %m.display(), error = %e, "cannot unmount persistent volume")
                }
            }
        }
    }

    pub(crate) fn start_executor(
        self: &Arc<Self>,
        agent_id: &str,
        fw: &FrameworkInfo,
        info: ExecutorInfo,
        kind: ExecutorKind,
        tasks: &[TaskInfo],
    ) -> Result<Executor, String> {
        let fw_id = fw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default();
        let ex_id = info.executor_id.value.clone();
        let container_id = uuid::Uuid::new_v4().to_string();
        let directory = paths::create_sandbox(
            &self.config.work_dir,
            agent_id,
            &fw_id,
            &ex_id,
            &container_id,
        )
        .map_err(|e| format!("failed to create the sandbox: {e}"))?;

        // The container's limits: the executor's resources, its tasks', and
        // Mesos' allowance for the command executor.
        let mut limits = Limits::of(&info.resources);
        for t in tasks {
            limits.add(Limits::of(&t.resources));
        }
        let docker_task = tasks.iter().find(|t| {
            t.container
                .as_ref()
                .is_some_and(|c| c.r#type == v1::container_info::Type::Docker as i32)
        });
        let docker_container = docker_task.map(|_| format!("mesos-{container_id}"));
        // A Docker task's resources limit its Docker container; the executor
        // that runs it gets the allowance.
        let mut cgroup_limits = if docker_task.is_some() {
            Limits::default()
        } else {
            limits
        };
        if kind == ExecutorKind::Command {
            cgroup_limits.cpus += COMMAND_EXECUTOR_CPUS;
            cgroup_limits.mem_mb += COMMAND_EXECUTOR_MEM_MB;
        }
        let cgroup = self.config.isolation.cgroup_spec(
            &self.config.cgroups_root,
            &container_id,
            cgroup_limits.cpus,
            cgroup_limits.mem_mb,
        );
        let command = match kind {
            ExecutorKind::Command => tasks.first().and_then(|t| t.command.as_ref()),
            _ => info.command.as_ref(),
        };
        let mut uris = command.map(|c| c.uris.clone()).unwrap_or_default();
        if kind == ExecutorKind::Default {
            // The default executor's tasks share its sandbox: their URIs
            // are fetched into it before it starts.
            uris.extend(
                tasks
                    .iter()
                    .filter_map(|t| t.command.as_ref())
                    .flat_map(|c| c.uris.iter().cloned()),
            );
        }
        let user = command
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| {
                self.config
                    .switch_user
                    .then(|| fw.user.clone())
                    .filter(|u| !u.is_empty())
            });
        let logger_env: Vec<(String, String)> = command
            .and_then(|c| c.environment.as_ref())
            .map(|e| {
                e.variables
                    .iter()
                    .filter(|v| v.name.starts_with("CONTAINER_LOGGER_"))
                    .filter_map(|v| v.value.clone().map(|val| (v.name.clone(), val)))
                    .collect()
            })
            .unwrap_or_default();
        let container_info = match kind {
            ExecutorKind::Command => tasks.first().and_then(|t| t.container.as_ref()),
            _ => info.container.as_ref(),
        };
        let rlimits = container_info
            .and_then(|c| c.rlimit_info.as_ref())
            .map(rlimits_of)
            .unwrap_or_default();

        let mut ex = Executor {
            info,
            kind,
            phase: ExecutorPhase::Registering,
            container_id: container_id.clone(),
            directory: directory.clone(),
            queued: Vec::new(),
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            events: None,
            process: None,
            exit_status: None,
            checkpoint: fw.checkpoint.unwrap_or(false),
            limits,
            cgroup: cgroup.clone(),
            docker_container,
            docker_cgroup: None,
            termination: None,
            recovered: false,
            disk_used: None,
            volume_mounts: Vec::new(),
            loggers: Vec::new(),
        };
        let mut spec = match kind {
            ExecutorKind::Command | ExecutorKind::Default => LaunchSpec {
                program: self.config.launcher.clone().into_os_string(),
                arg0: None,
                args: vec!["executor".into()],
                env: Vec::new(),
                sandbox: directory.clone(),
                launcher: None,
                user: None,
                rlimits: Vec::new(),
                cgroup: None,
                logger: ContainerLogger::Sandbox,
            },
            ExecutorKind::Custom => {
                let cmd = ex
                    .info
                    .command
                    .as_ref()
                    .ok_or_else(|| "the executor has no command".to_string())?;
                let value = cmd.value.clone().unwrap_or_default();
                if cmd.shell.unwrap_or(true) {
                    if value.is_empty() {
                        return Err("the executor's shell command is empty".into());
                    }
                    LaunchSpec::shell(&value, &directory)
                } else {
                    if value.is_empty() {
                        return Err("the executor's command has no value".into());
                    }
                    let mut args = cmd.arguments.iter().map(Into::into);
                    let arg0 = args.next();
                    LaunchSpec {
                        program: value.into(),
                        arg0,
                        args: args.collect(),
                        env: Vec::new(),
                        sandbox: directory.clone(),
                        launcher: None,
                        user: None,
                        rlimits: Vec::new(),
                        cgroup: None,
                        logger: ContainerLogger::Sandbox,
                    }
                }
            }
        };
        spec.launcher = self.config.container_launcher.clone();
        spec.user = user;
        spec.rlimits = rlimits;
        spec.cgroup = cgroup;
        spec.env = self.executor_env(agent_id, fw, &ex);
        spec.logger = match &self.config.container_logger {
            ContainerLogger::Logrotate { corral, settings } => {
                // A task may size its own logs through its environment.
                ContainerLogger::Logrotate {
                    corral: corral.clone(),
                    settings: settings.with_overrides(&logger_env, &container_id),
                }
            }
            ContainerLogger::Sandbox => ContainerLogger::Sandbox,
        };
        if kind == ExecutorKind::Custom {
            if let Some(env) = ex
                .info
                .command
                .as_ref()
                .and_then(|c| c.environment.as_ref())
            {
                for var in &env.variables {
                    if let Some(v) = &var.value {
                        spec.env.push((var.name.clone(), v.clone()));
                    }
                }
            }
        }
        if ex.docker_container.is_none() {
            // A Docker task's volumes are binds of its Docker container.
            let wanted = volumes::volumes_of(
                ex.info
                    .resources
                    .iter()
                    .chain(tasks.iter().flat_map(|t| t.resources.iter())),
            );
            ex.volume_mounts = self.mount_volumes(&directory, &wanted, &[])?;
        }
        if uris.is_empty() {
            if let Err(e) = self.launch_process(&mut ex, &spec, &fw_id) {
                self.unmount_volumes(&ex.volume_mounts);
                return Err(e);
            }
            self.checkpoint_executor(agent_id, fw, &ex);
            return Ok(ex);
        }
        // Fetch first; the executor starts once the URIs are in the sandbox.
        tracing::info!(framework_id = %fw_id, executor_id = %ex_id, uris = uris.len(), "fetching");
        let agent = self.clone();
        let (fw_info, agent_id) = (fw.clone(), agent_id.to_string());
        tokio::spawn(async move {
            let fetched = agent.config.fetcher.fetch_all(&uris, &directory).await;
            agent.fetched(&agent_id, &fw_info, &ex_id, &container_id, fetched, spec);
        });
        Ok(ex)
    }

    /// The fetcher finished for a container: start its executor, or fail
    /// its tasks naming the URI.
    pub(crate) fn fetched(
        self: &Arc<Self>,
        agent_id: &str,
        fw: &FrameworkInfo,
        ex_id: &str,
        container_id: &str,
        fetched: Result<(), crate::fetcher::FetchError>,
        spec: LaunchSpec,
    ) {
        let fw_id = fw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default();
        let mut st = lock(&self.state);
        let Some(ex) = st
            .frameworks
            .get_mut(&fw_id)
            .and_then(|f| f.executors.get_mut(ex_id))
            .filter(|e| e.container_id == container_id)
        else {
            return;
        };
        let failure = match fetched {
            _ if ex.phase != ExecutorPhase::Registering => Some(None),
            Ok(()) => match self.launch_process(ex, &spec, &fw_id) {
                Ok(()) => {
                    let ex = &*ex;
                    self.checkpoint_executor(agent_id, fw, ex);
                    None
                }
                Err(e) => Some(Some(Termination {
                    state: TaskState::TaskFailed,
                    reason: task_status::Reason::ContainerLaunchFailed,
                    message: e,
                    limitation: None,
                })),
            },
            Err(e) => Some(Some(Termination {
                state: TaskState::TaskFailed,
                reason: task_status::Reason::ContainerLaunchFailed,
                message: e.to_string(),
                limitation: None,
            })),
        };
        if let Some(termination) = failure {
            // Killed or shut down while fetching, or the fetch failed: the
            // container never ran.
            if termination.is_some() {
                ex.termination = termination;
            }
            drop(st);
            self.executor_exited(&fw_id, ex_id, container_id, None);
        }
    }

    pub(crate) fn launch_process(
        self: &Arc<Self>,
        ex: &mut Executor,
        spec: &LaunchSpec,
        fw_id: &str,
    ) -> Result<(), String> {
        let ex_id = ex.info.executor_id.value.clone();
        let container_id = ex.container_id.clone();
        let weak: Weak<Agent> = Arc::downgrade(self);
        let (f, e, c) = (fw_id.to_string(), ex_id.clone(), container_id.clone());
        let (process, loggers) = containerizer::launch_logged(spec, move |status| {
            if let Some(agent) = weak.upgrade() {
                agent.executor_exited(&f, &e, &c, status);
            }
        })
        .map_err(|err| {
            format!(
                "failed to start executor '{}': {err}",
                spec.program.to_string_lossy()
            )
        })?;
        tracing::info!(
            framework_id = %fw_id,
            executor_id = %ex_id,
            container_id = %container_id,
            pid = process.pid(),
            cgroup = ex.cgroup.as_ref().map(|c| c.path.as_str()).unwrap_or(""),
            logger_pids = ?loggers.iter().map(|l| l.pid()).collect::<Vec<_>>(),
            "executor started"
        );
        ex.process = Some(process);
        ex.loggers = loggers;

        let weak: Weak<Agent> = Arc::downgrade(self);
        let timeout = self.config.executor_registration_timeout;
        let fw_id = fw_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(agent) = weak.upgrade() {
                agent.registration_timed_out(&fw_id, &ex_id, &container_id);
            }
        });
        Ok(())
    }

    pub(crate) fn registration_timed_out(&self, fw_id: &str, ex_id: &str, container_id: &str) {
        let mut st = lock(&self.state);
        let Some(ex) = st
            .frameworks
            .get_mut(fw_id)
            .and_then(|f| f.executors.get_mut(ex_id))
            .filter(|e| e.container_id == container_id && e.phase == ExecutorPhase::Registering)
        else {
            return;
        };
        tracing::warn!(
            framework_id = fw_id,
            executor_id = ex_id,
            "executor did not subscribe in time, killing it"
        );
        let queued = std::mem::take(&mut ex.queued);
        ex.phase = ExecutorPhase::Terminating;
        if let Some(p) = &ex.process {
            p.signal(Signal::SIGKILL);
        }
        let executor_id = ex.info.executor_id.clone();
        for q in queued {
            for task_id in q.task_ids() {
                let status = Self::agent_status(
                    &st,
                    &ids::task_id(task_id),
                    Some(&executor_id),
                    TaskState::TaskFailed,
                    task_status::Reason::ExecutorRegistrationTimeout,
                    "executor did not register within the executor registration timeout",
                );
                self.emit(&mut st, fw_id, status);
            }
        }
    }
}
