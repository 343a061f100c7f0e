/*
 * latticeml: lattice field theory sampling from C, C++ and Fortran.
 * Generated from capi/src by cbindgen (capi/build.rs); do not edit: the build checks it.
 *
 * Link: -llatticeml_c (target/release/liblatticeml_c.so or .a).
 * Every function returning int returns LATTICEML_OK (0) or an error code; the message is in
 * latticeml_last_error(). Fields are double arrays [chain][site], row-major, axis 0 = time.
 * Devices and theories may be shared between threads; a sampler or result is used by one
 * thread at a time.
 */

#ifndef LATTICEML_H
#define LATTICEML_H

#include <stddef.h>
#include <stdint.h>

// Success.
#define LATTICEML_OK 0

// A parameter is out of range, a pointer is null, a length is wrong, or a string is not UTF-8.
#define LATTICEML_ERR_INVALID_INPUT 1

// A field or observable became NaN or infinite (unstable couplings or step size).
#define LATTICEML_ERR_NON_FINITE 2

// A file could not be read or written.
#define LATTICEML_ERR_IO 3

// A file is corrupt or belongs to a different run.
#define LATTICEML_ERR_BAD_FILE 4

// CUDA is unavailable or a driver call failed.
#define LATTICEML_ERR_CUDA 5

// NVRTC is unavailable or a kernel failed to compile.
#define LATTICEML_ERR_NVRTC 6

// The work needs more memory than the host or the device has free (checked before allocating).
#define LATTICEML_ERR_OUT_OF_MEMORY 7

// A bug in latticeml (a caught panic); the message says where. Please report it.
#define LATTICEML_ERR_INTERNAL 99

// A compute device: the multi-threaded CPU or one CUDA GPU.
typedef struct latticeml_device latticeml_device;

// The record of one `latticeml_sampler_run` call (immutable once made).
typedef struct latticeml_result latticeml_result;

// A batch of chains with its sampler (use from one thread at a time).
typedef struct latticeml_sampler latticeml_sampler;

// A lattice theory with its couplings (immutable; may be shared between threads).
typedef struct latticeml_theory latticeml_theory;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library's version, e.g. `"0.1.0"` (a static string).
const char *latticeml_version(void);

// Opens the device `name`: `"auto"` (the GPU when CUDA, a device and NVRTC are present, else
// the CPU), `"cpu"`, `"cuda"` or `"cuda:N"`.
//
// # Safety
// `name` must be a NUL-terminated string; `out` must point to a writable handle pointer.
int latticeml_device_new(const char *name, struct latticeml_device **out);

// Writes the device's description (e.g. `cpu (16 threads)`, `cuda:0 NVIDIA H100 (sm_90)`) into
// `buf`, truncated to `len − 1` bytes and NUL-terminated.
//
// # Safety
// `device` must be a live device handle; `buf` must point to `len` writable bytes.
int latticeml_device_describe(const struct latticeml_device *device, char *buf, size_t len);

// Releases a device (null is ignored).
//
// # Safety
// `device` must be null or a live device handle, not used afterwards.
void latticeml_device_free(struct latticeml_device *device);

// Releases a result (null is ignored).
//
// # Safety
// `result` must be null or a live result handle, not used afterwards.
void latticeml_result_free(struct latticeml_result *result);

// The number of updates recorded (per chain) and of chains.
//
// # Safety
// `result` must be a live handle; `updates` and `chains` must point to writable `size_t`s.
int latticeml_result_shape(const struct latticeml_result *result, size_t *updates, size_t *chains);

// The number of named observables (estimates) of the result.
//
// # Safety
// `result` must be a live handle; `out` must point to a writable `size_t`.
int latticeml_result_observable_count(const struct latticeml_result *result, size_t *out);

// The name of observable `index` (0-based; e.g. `chi2`, `absM`, `binder` for φ⁴; `x2`, `x4`,
// `E0` for the oscillator) into `buf`, truncated to `len − 1` bytes and NUL-terminated.
//
// # Safety
// `result` must be a live handle; `buf` must point to `len` writable bytes.
int latticeml_result_observable_name(const struct latticeml_result *result,
                                     size_t index,
                                     char *buf,
                                     size_t len);

// The estimate of observable `name` over all chains and updates of the result: its value, its
// Γ-method error (autocorrelations included) and its integrated autocorrelation time in
// updates. An error that cannot be trusted (a series shorter than 50 τ_int, a constant series)
// is still returned; the output pointers may be null for values not wanted.
//
// # Safety
// `result` must be a live handle; `name` a NUL-terminated string; each output null or writable.
int latticeml_result_observable(const struct latticeml_result *result,
                                const char *name,
                                double *value,
                                double *error,
                                double *tau_int);

// The mean acceptance over all chains and updates.
//
// # Safety
// `result` must be a live handle; `out` must point to a writable double.
int latticeml_result_acceptance(const struct latticeml_result *result, double *out);

// ⟨e^{−ΔH}⟩ with its Γ-method error (exactly 1 for a correct HMC; chains as replicas). Samplers
// without a global ΔH (local and cluster updates) have none: an error.
//
// # Safety
// `result` must be a live handle; `mean` and `error` null or writable doubles.
int latticeml_result_exp_minus_delta_h(const struct latticeml_result *result,
                                       double *mean,
                                       double *error);

// Copies ΔH of every update and chain, `[update][chain]` (NaN for samplers without one), into
// `buf` of exactly updates × chains values.
//
// # Safety
// `result` must be a live handle; `buf` must point to `len` writable doubles.
int latticeml_result_delta_h(const struct latticeml_result *result, double *buf, size_t len);

// Copies the series of the primary observable `name` (a per-configuration quantity, e.g. `M`,
// `M2`, `absM` for φ⁴), `[chain][update]`, into `buf` of exactly chains × updates values.
//
// # Safety
// `result` must be a live handle; `name` a NUL-terminated string; `buf` must point to `len`
// writable doubles.
int latticeml_result_series(const struct latticeml_result *result,
                            const char *name,
                            double *buf,
                            size_t len);

// Hybrid Monte Carlo on `chains` chains: trajectories of length `tau` in `steps` steps of the
// `integrator` (`"leapfrog"`, `"omelyan"` or `"omelyan4"`), Philox `seed`. The theory must
// have a force (φ⁴, the oscillator).
//
// # Safety
// `theory`, `device` must be live handles; `integrator` a NUL-terminated string; `out` must
// point to a writable handle pointer.
int latticeml_hmc_new(const struct latticeml_theory *theory,
                      const struct latticeml_device *device,
                      size_t chains,
                      double tau,
                      size_t steps,
                      const char *integrator,
                      uint64_t seed,
                      struct latticeml_sampler **out);

// Fourier-accelerated HMC: as [`latticeml_hmc_new`] with the kinetic term ½Σₖ|p̃ₖ|²/(k̂² + m2)
// (m2 > 0; the command line's default is 4 sin²(π/L), at least 0.01).
//
// # Safety
// As [`latticeml_hmc_new`].
int latticeml_fa_hmc_new(const struct latticeml_theory *theory,
                         const struct latticeml_device *device,
                         size_t chains,
                         double tau,
                         size_t steps,
                         const char *integrator,
                         uint64_t seed,
                         double m2,
                         struct latticeml_sampler **out);

// Langevin dynamics on `chains` chains with time step `epsilon`: Metropolis-adjusted (MALA,
// exact) when `adjusted` is nonzero, else the unadjusted Euler–Maruyama update (stochastic
// quantisation, exact only as ε → 0). The theory must have a force.
//
// # Safety
// `theory`, `device` must be live handles; `out` must point to a writable handle pointer.
int latticeml_langevin_new(const struct latticeml_theory *theory,
                           const struct latticeml_device *device,
                           size_t chains,
                           double epsilon,
                           int adjusted,
                           uint64_t seed,
                           struct latticeml_sampler **out);

// A local update on `chains` chains: `algorithm` is `"metropolis"` (`hits` proposals per site,
// 0 for the default 1), `"overrelax"` (XY), `"heatbath"` (Ising), `"cluster"` (a Metropolis
// sweep then Swendsen–Wang on the embedded Ising signs; φ⁴, the oscillator) or `"wolff"` (the
// same with `clusters` single clusters, 0 for the default 4). A nonzero `hits` or `clusters` for
// an algorithm that takes none is refused.
//
// # Safety
// `theory`, `device` must be live handles; `algorithm` a NUL-terminated string; `out` must
// point to a writable handle pointer.
int latticeml_local_new(const struct latticeml_theory *theory,
                        const struct latticeml_device *device,
                        size_t chains,
                        const char *algorithm,
                        uint32_t hits,
                        uint32_t clusters,
                        uint64_t seed,
                        struct latticeml_sampler **out);

// Makes the sampler's chains the chains `first .. first + chains` of a larger ensemble, e.g.
// this MPI rank's share (`first = rank × chains`), and restarts them from those chains' own hot
// start: every random number is keyed by the global chain index, so the ranks together run
// exactly the chains of one process running the whole ensemble. Call it before the first update.
//
// # Safety
// `sampler` must be a live handle used by no other thread.
int latticeml_sampler_set_first_chain(struct latticeml_sampler *sampler, size_t first);

// Releases a sampler (null is ignored).
//
// # Safety
// `sampler` must be null or a live sampler handle, not used afterwards.
void latticeml_sampler_free(struct latticeml_sampler *sampler);

// The number of chains.
//
// # Safety
// `sampler` must be a live handle; `out` must point to a writable `size_t`.
int latticeml_sampler_chains(const struct latticeml_sampler *sampler, size_t *out);

// Updates (trajectories or sweeps) done so far, including those before a restore.
//
// # Safety
// `sampler` must be a live handle; `out` must point to a writable `uint64_t`.
int latticeml_sampler_updates_done(const struct latticeml_sampler *sampler, uint64_t *out);

// Thermalises with `updates` updates, measuring nothing, on the command line's schedule
// (`--therm updates`): the first half with smaller steps (for HMC 8, 4, then 2 times the MD
// steps at the same τ), the second at the production step size.
//
// # Safety
// `sampler` must be a live handle used by no other thread.
int latticeml_sampler_thermalize(struct latticeml_sampler *sampler, uint64_t updates);

// Runs `updates` updates at the production step size, measuring every chain after each, and
// hands out their record: observables with Γ-method errors, ΔH and acceptance.
//
// # Safety
// `sampler` must be a live handle used by no other thread; `out` must point to a writable
// handle pointer.
int latticeml_sampler_run(struct latticeml_sampler *sampler,
                          uint64_t updates,
                          struct latticeml_result **out);

// Copies the fields, `[chain][site]`, into `buf` of exactly chains × volume values.
//
// # Safety
// `sampler` must be a live handle; `buf` must point to `len` writable doubles.
int latticeml_sampler_get_fields(const struct latticeml_sampler *sampler, double *buf, size_t len);

// Sets the fields from `buf`, `[chain][site]`, exactly chains × volume values (angles in
// [0, 2π) for XY, ±1 for Ising); non-finite or out-of-range values are refused.
//
// # Safety
// `sampler` must be a live handle used by no other thread; `buf` must point to `len` readable
// doubles.
int latticeml_sampler_set_fields(struct latticeml_sampler *sampler, const double *buf, size_t len);

// Copies the fields, `[chain][site]` (raw: XY angles unwrapped), into the caller's CUDA device
// buffer `dptr` (a `CUdeviceptr` of `len` = chains × volume doubles, from `cudaMalloc` or
// `cuMemAlloc` on the sampler's device), device to device, on the caller's `stream` (a
// `cudaStream_t`/`CUstream`, or NULL for the legacy default stream): after the sampler's queued
// work, before work the caller queues on `stream` later. The host does not wait; latticeml
// keeps no reference to the buffer or the stream after the call. A sampler on the CPU refuses
// (`LATTICEML_ERR_INVALID_INPUT`), as do a null, misaligned, too short or other-device pointer.
//
// # Safety
// `sampler` must be a live handle; `stream` NULL or a live stream of the device's primary
// context (the CUDA runtime's); `dptr` must stay allocated until the copy has run on `stream`.
int latticeml_sampler_get_fields_device(struct latticeml_sampler *sampler,
                                        uint64_t dptr,
                                        size_t len,
                                        void *stream);

// Sets the fields from the caller's CUDA device buffer `dptr` (`[chain][site]`, `len` =
// chains × volume doubles), device to device, after the work queued on the caller's `stream`
// (NULL: the legacy default stream); work the caller queues on `stream` afterwards may
// overwrite the buffer. The values are not checked for NaN here: a non-finite action stops
// the next trajectory with `LATTICEML_ERR_NON_FINITE`. Refusals as for
// `latticeml_sampler_get_fields_device`.
//
// # Safety
// `sampler` must be a live handle used by no other thread; `stream` and `dptr` as for
// `latticeml_sampler_get_fields_device`.
int latticeml_sampler_set_fields_device(struct latticeml_sampler *sampler,
                                        uint64_t dptr,
                                        size_t len,
                                        void *stream);

// Writes the sampler's complete state (fields, counters, anything its chain depends on) to
// `path`, atomically. An existing file is replaced only when it is a checkpoint of this same
// chain (same theory, chains and sampler parameters); anything else there is refused, never
// overwritten.
//
// # Safety
// `sampler` must be a live handle; `path` a NUL-terminated string.
int latticeml_sampler_checkpoint(const struct latticeml_sampler *sampler, const char *path);

// Restores the state written by [`latticeml_sampler_checkpoint`]; the sampler must have been
// created with the same theory, chains and parameters. The continued chain is bit-identical to
// one that never stopped.
//
// # Safety
// `sampler` must be a live handle used by no other thread; `path` a NUL-terminated string.
int latticeml_sampler_restore(struct latticeml_sampler *sampler, const char *path);

// The message of the last failed call on this thread ("" if none failed). The pointer stays
// valid until the next failing call on the same thread; copy it to keep it.
//
// Thread safety: each thread has its own last error.
const char *latticeml_last_error(void);

// Copies the last error message of this thread into `buf` (at most `len − 1` bytes and a NUL)
// and returns the message's full length in bytes (without the NUL), so a caller can size the
// buffer. With `buf` null or `len` 0 nothing is written. Convenient from Fortran.
//
// # Safety
// `buf` must be null or point to `len` writable bytes.
size_t latticeml_last_error_copy(char *buf, size_t len);

// φ⁴ in the hopping form S = Σₓ [−2κ Σ_μ φₓφₓ₊μ + (1 − 2λ)φₓ² + λφₓ⁴] on a periodic lattice of
// `dims` (1 to 4) extents.
//
// # Safety
// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
int latticeml_theory_phi4(size_t dims,
                          const size_t *extents,
                          double kappa,
                          double lambda,
                          struct latticeml_theory **out);

// φ⁴ in the standard form of the flow papers, S = Σₓ [Σ_μ (φₓ₊μ − φₓ)² + m²φₓ² + λ₀φₓ⁴],
// converted to the hopping form (φ_std = √κ φ_hop) exactly as `--m2 --lambda0` on the command
// line.
//
// # Safety
// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
int latticeml_theory_phi4_standard(size_t dims,
                                   const size_t *extents,
                                   double m2,
                                   double lambda0,
                                   struct latticeml_theory **out);

// The anharmonic (double-well for f > 0) oscillator: mass m, quartic λ, well position f, inverse
// temperature β and `n` time slices (spacing a = β/n).
//
// # Safety
// `out` must point to a writable handle pointer.
int latticeml_theory_oscillator(double mass,
                                double lambda,
                                double f,
                                double beta,
                                size_t n,
                                struct latticeml_theory **out);

// The XY model S = −β Σ cos(θₓ − θₓ₊μ) (even extents, for the checkerboard updates).
//
// # Safety
// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
int latticeml_theory_xy(size_t dims,
                        const size_t *extents,
                        double beta,
                        struct latticeml_theory **out);

// The Ising model S = −β Σ sₓsₓ₊μ on a 2D torus with even extents; it runs local updates only.
//
// # Safety
// `extents` must point to `dims` readable values; `out` to a writable handle pointer.
int latticeml_theory_ising(size_t dims,
                           const size_t *extents,
                           double beta,
                           struct latticeml_theory **out);

// The number of lattice sites (the length of one chain's field).
//
// # Safety
// `theory` must be a live theory handle; `out` must point to a writable `size_t`.
int latticeml_theory_volume(const struct latticeml_theory *theory, size_t *out);

// Releases a theory (null is ignored). Samplers built on it keep working.
//
// # Safety
// `theory` must be null or a live theory handle, not used afterwards.
void latticeml_theory_free(struct latticeml_theory *theory);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* LATTICEML_H */
