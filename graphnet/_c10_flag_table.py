"""The command-line flags GlobalInit accepts: the C10 flag registry of Caffe2 1.10.2.

HELP is what real Caffe2 1.10.2 (torch 1.10.2 wheel, built without gflags/glog)
printed for `workspace.GlobalInit(["caffe2", "--help"])`, in its order: one
"    <name>: (<type>, default <value>) <help>" line per registered flag (golden from
real Caffe2 1.10.2). Data only; graphnet.c10_flags parses it.
"""

HELP = """\
    caffe2_gpu_memory_tracking: (bool, default false) If set, logs changes in GPU memory allocations
    caffe2_cub_max_bin: (int, default 10) If using cub as the memory allocator, sets the max number of bins.
    caffe2_cub_min_bin: (int, default 3) If using cub as the memory allocator, sets the min number of bins.
    caffe2_cub_bin_growth: (int, default 8) If using cub as the memory allocator, sets the growth of bins used by the cub pool.
    caffe2_cuda_memory_pool: (std::string, default "") Sets the memory pool used by caffe2. Possible values are none, cnmem, thc and cub.
    torch_jit_llvm_use_fast_intrinsics: (bool, default false) Use fast (but slightly less accurate) implementations of tanh and sigmoid
    torch_jit_bailout_depth: (int64_t, default kDefaultBailoutDepth) Number of re-specializations
    torch_jit_num_profiled_runs: (int64_t, default kDefaultNumProfiledRuns) Number of profiling runs
    torch_jit_disable_warning_prints: (bool, default false) Disables warning.warn prints in TorchScript graph
    torch_jit_enable_new_executor: (bool, default true) If this flag is set to false TorchScript will be using the legacy/original executor
    caffe2_cub_max_managed_mb: (int, default 10 * 1024) If using cub as the memory allocators, sets the maximum amount of memory managed in gigabytes
    torch_jit_enable_rethrow_caught_exception: (bool, default false) enable rethrowing caught exception
    torch_jit_disable_cat: (bool, default false) disable aten::cat in TE fusion groups
    caffe2_profile_nnpack: (bool, default false) 
    onnxifi_blacklist_ops: (std::string, default "") A list of operator types that will be ignored to onnxifi. Example Tanh,Mul
    onnxifi_shape_hints: (std::string, default "") Shape hints in the form of Name:d0,d1:d2;
    onnxifi_timeout_ms: (int, default 0) Timeout limit for onnxifi inference in milliseconds. 0 means no timeout
    onnxifi_min_ops: (int, default 1) Minimum number of ops for a subgraph to be lowered to backend
    verify_only_single_subnet: (bool, default false) Check that only one subnet is created during Onnxifi.
    merge_fp32_inputs_into_fp16: (bool, default false) Merge all the fp32 input tensors into one, convert it to fp16 and split it back
    enforce_fp32_inputs_into_fp16: (bool, default false) Whether to enforce fp32 to fp16 conversion for external inputs.
    fake_fp16_conversion_use_fp16_acc: (bool, default false) Whether to enable fp16 accumulation for FC / BatchMatMul for fakefp16 operators.
    caffe2_dnnlowp_enforce_default_operators: (bool, default false) When true, enforce to use the default Caffe2 operators inside DNNLOWPinstead of using its own implementation that uses AVX2 instructions(currently only honored by FC)
    caffe2_dnnlowp_activation_p99_threshold: (double, default 0.99) P99 threshold to select out from the full histogram for activations.
    caffe2_dnnlowp_weight_p99_threshold: (double, default 0.99) P99 threshold to select out from the full histogram for weights.
    caffe2_dnnlowp_activation_quantization_kind: (std::string, default "min_max") Quantization method for activation tensors. Allowed values: min_max, l2, l2_approx, kl, l1, p99
    caffe2_dnnlowp_force_scale_power_of_two: (bool, default false) When true, force quantization scales to a power of two
    onnxifi_input_output_observe_list: (std::string, default "") A list of net positions whose corresponding op's inputs and outputs will be observed. 
    caffe2_dnnlowp_eltwise_quantization_precision: (int, default 16) Precision used for intermediate numbers during elementwise operations
    caffe2_dnnlowp_requantization_multiplier_precision: (int, default 32) Precision of integer multipliers used for rescaling quantized numbers
    caffe2_dnnlowp_weight_quantization_precision: (int, default 8) Precision used for weight tensors
    caffe2_operator_throw_on_first_occurrence_if_fp_exceptions: (bool, default false) If set with caffe2_operator_throw_if_fp_exceptions or caffe2_operator_throw_if_fp_overflow_exceptions, throw on the first occurrence of corresponding floating point exceptions that is detected when running any operator.
    caffe2_threadpool_ios_cap: (int, default true) 
    caffe2_net_async_profile_operators: (bool, default false) If set, profile operators of the net regardless of net being prof_dag.
    minloglevel: (int, default 0) Equivalent to glog minloglevel
    caffe2_dnnlowp_activation_quantization_precision: (int, default 8) Precision used for activation tensors
    caffe2_threadpool_macos_cap: (int, default true) 
    caffe2_serialize_using_bytes_as_holder: (bool, default false) Serialize BOOL, UINT8, INT8, UINT16, INT16, FLOAT16 tensors using byte_data field instead of int32
    caffe2_override_executor: (std::string, default "") Comma-separated list of executor overrides
    caffe2_dnnlowp_preserve_weight_sparsity: (bool, default false) When true, 0 is mapped to 0 after quantization: i.e., symmetric quantization
    caffe2_net_async_tracing_nth: (int, default 100) Trace every Nth batch
    caffe2_plan_executor_exception_timeout: (int, default 60) Number of seconds to wait for concurrent threads to stop on exceptionbefore terminating.
    caffe2_dnnlowp_acc16_k_threshold: (int, default 0) If k is smaller than this, fallback to 32-bit accumulation
    caffe2_mkl_num_threads: (int, default 0) The number of mkl threads. 0 to use default value. If set, this overrides the caffe2_omp_num_threads flag if both are set. Does not have effect if MKL is not used.
    caffe2_version: (bool, default false) Print Caffe2 version and build options on startup
    caffe2_rnn_executor: (bool, default true) If set, uses special RNN executor for executing RecurrentNetworkOp
    caffe2_net_async_thread_pool_size: (int, default 0) Number of threads in device thread pool by default
    caffe2_dnnlowp_copy_to_32bit_frequency: (int, default 32) When outlier-aware quantization is used, this option specifies how often we spill 16-bit accumulated numbers to 32-bit during the first pass
    caffe2_dnnlowp_acc16_density_threshold: (double, default 0.05) If density of outlier is higher than this, fallback to 32-bit accumulation
    caffe2_print_blob_sizes_at_exit: (bool, default false) If true, workspace destructor will print all blob shapes
    caffe2_cub_print_allocation_events: (bool, default false) If true CachingDeviceAllocator will print allocation and deallocation events to stdout.
    onnxifi_debug_mode: (bool, default false) Enable onnxifi debug mode.
    caffe2_report_cpu_memory_usage: (bool, default false) If set, print out detailed memory usage
    caffe2_net_async_use_single_pool: (bool, default false) Use single thread pool for all devices
    caffe2_task_graph_engine: (std::string, default "futures") Task graph engine type used by net executor
    caffe2_cpu_allocator_do_junk_fill: (bool, default false) If set, fill memory with deterministic junk when allocating on CPU
    caffe2_use_fatal_for_enforce: (bool, default false) If set true, when CAFFE_ENFORCE is not met, abort instead of throwing an exception.
    caffe2_threadpool_android_cap: (int, default true) 
    caffe2_net_async_names_to_trace: (std::string, default "") Comma-separated list of net names to trace
    caffe2_cpu_allocator_do_zero_fill: (bool, default false) If set, do memory zerofilling when allocating on CPU
    caffe2_dnnlowp_force_slow_path: (bool, default false) When true, use slow path in quantization
    caffe2_keep_on_shrink: (bool, default true) If set, keeps memory when a tensor is shrinking its size.
    static_runtime_enable_fast_math: (bool, default true) If on, static runtime may use use optimizations that cause accurary loss vs the jit interpreter
    caffe2_omp_num_threads: (int, default 0) The number of openmp threads. 0 to use default value. Does not have effect if OpenMP is disabled.
    caffe2_print_stacktraces: (bool, default false) If set, prints stacktraces when a fatal signal is raised.
    caffe2_serialize_fp16_as_bytes: (bool, default false) Serialize FLOAT16 tensors using byte_data field
    caffe2_max_keep_on_shrink_memory: (int64_t, default 0x7fffffffffffffffLL) The maximum memory in bytes to keep on shrink, if the difference between tensor sizes is bigger than this then tensor will be reset.
    caffe2_dnnlowp_preserve_activation_sparsity: (bool, default false) When true, 0 is mapped to 0 after quantization: i.e., symmetric quantization
    caffe2_quit_on_unsupported_cpu_feature: (bool, default false) If set, when Caffe2 is built with a CPU feature (like avx2) but the current CPU does not support it, quit early. If not set (by default), log this as an error message and continue execution.
    caffe2_net_async_check_stream_status: (bool, default false) Select next non-busy stream
    caffe2_streams_per_gpu: (int, default 1) Number of streams per worker per GPU to use in GPU thread pool (experimental)
    v: (int, default 0) Equivalent to glog verbose
    caffe2_force_shared_col_buffer: (bool, default false) Always use the shared col buffer
    logtostderr: (bool, default false) Equivalent to glog logtostderr
    caffe2_simple_net_benchmark_run_whole_net: (bool, default true) If false, whole net passes won't be performed
    caffe2_net_async_max_gpus: (int, default 16) Max number of GPUs allowed in net async executor
    caffe2_log_level: (int, default c10::GLOG_WARNING) The minimum log level that caffe2 will output.
    caffe2_net_async_tracing_filepath: (std::string, default "/tmp") Path to save tracing information
    caffe2_profile_depthwise: (bool, default false) 
    caffe2_cpu_numa_enabled: (bool, default false) Use NUMA whenever possible.
    caffe2_net_async_inference_mode: (bool, default false) If set, use one single chain containing all ops
    caffe2_tensor_chunk_size: (int, default 1000000) Chunk size to split tensor data into
    caffe2_max_tensor_serializer_threads: (int, default 16) Maximal number of threads that can be used for tensor serialization
    caffe2_net_async_run_root_tasks_inline: (bool, default false) Run root tasks in current thread instread of scheduling to threadpool
    onnxifi_blacklist: (std::string, default "") A list of net positions whose corresponding op will be ignored to onnxifi. Example 0-50,61,62-70
    caffe2_operator_max_engine_name_length: (int, default 10) Maximum engine name length to be stored
    caffe2_dnnlowp_acc16_m_threshold: (int, default 0) If m is smaller than this, fallback to 32-bit accumulation
    use_onnxifi_batch_size: (bool, default true) If true then instead of nominal batch blob for determining current batch size we would use batch size provided as part of Glow request data.
    caffe2_net_async_tracing_dumping_nth: (int, default 10000) Dump profiling result file every Nth batch
    caffe2_dnnlowp_acc16_n_threshold: (int, default 0) If n is smaller than this, fallback to 32-bit accumulation
    fake_fp16_conversion_use_nnpi: (bool, default false) Whether to simulate NNPI behavior for fakefp16 operators.
    caffe2_disable_implicit_engine_preference: (bool, default false) If set, disable implicit engine preferences. This is useful for unit testing and debugging cases.
    caffe2_gpu_memory_report_interval_mb: (int, default 128) The threshold in MB on how frequently to report memory changes
    caffe2_operator_throw_if_fp_exceptions: (bool, default false) If set, throws if floating point exceptions (FE_DIVBYZERO, FE_INVALID) are detected when running any operator. FE_OVERFLOW is handled separately by caffe2_operator_throw_if_fp_overflow_exceptions option.
    caffe2_operator_throw_if_fp_overflow_exceptions: (bool, default false) If set, throws if floating point exception FE_OVERFLOW is detected when running any operator.
    onnxifi_adjust_batch: (bool, default true) Attach AdjustBatch ops at input/outputs of the Onnxifi ops
    caffe2_handle_executor_threads_exceptions: (bool, default false) If used we will handle exceptions in executor threads. This avoids SIGABRT but may cause process to deadlock
    caffe2_dnnlowp_nbits_in_non_outlier: (int, default 8) When outlier-aware quantization is used, if a quantized number can be represented by this number of bits, it is considered not an outlier so handled with 16-bit accumulation
    caffe2_threadpool_force_inline: (bool, default false) Force to always run jobs on the calling thread
    caffe2_net_async_use_per_net_pools: (bool, default false) Use per net thread pools
    caffe2_net_async_max_numa_nodes: (int, default 8) Max number of NUMA nodes allowed in net async executor
    pthreadpool_size: (int, default 0) Override the default thread pool size.
    caffe2_workspace_stack_debug: (bool, default false) Enable debug checks for CreateScope's workspace stack
    caffe2_dnnlowp_shared_int32_buffer: (bool, default false) Share intermediate int32 buffer across DNNLOWP Conv ops
    caffe2_dnnlowp_weight_quantization_kind: (std::string, default "min_max") Quantization method for weight tensors. Allowed values: min_max, l2, l2_approx, kl, l1, p99
    caffe2_dnnlowp_dump_tensors: (bool, default false) Dump quantized input and weight tensors used in Conv and FC operators during the first iteration
"""
