! latticeml from Fortran 2003+ through iso_c_binding: interfaces to the C functions of
! include/latticeml.h (the contract; capi/tests/examples.rs checks that every function there is
! bound here with the same arguments).
!
! Handles are type(c_ptr); strings are passed NUL-terminated ("omelyan"//c_null_char); every
! integer(c_int) function returns LATTICEML_OK (0) or an error code, the message then coming from
! latticeml_last_error_copy. Fields are real(c_double) arrays [chain][site] in C order: in Fortran
! phi(site, chain) with site = the C row-major index (axis 0 = time slowest).
module latticeml
  use, intrinsic :: iso_c_binding
  implicit none
  private :: c_ptr, c_int, c_size_t, c_double, c_char, c_int64_t, c_int32_t

  integer(c_int), parameter :: LATTICEML_OK = 0
  integer(c_int), parameter :: LATTICEML_ERR_INVALID_INPUT = 1
  integer(c_int), parameter :: LATTICEML_ERR_NON_FINITE = 2
  integer(c_int), parameter :: LATTICEML_ERR_IO = 3
  integer(c_int), parameter :: LATTICEML_ERR_BAD_FILE = 4
  integer(c_int), parameter :: LATTICEML_ERR_CUDA = 5
  integer(c_int), parameter :: LATTICEML_ERR_NVRTC = 6
  integer(c_int), parameter :: LATTICEML_ERR_OUT_OF_MEMORY = 7
  integer(c_int), parameter :: LATTICEML_ERR_INTERNAL = 99

  interface
    type(c_ptr) function latticeml_version() bind(C, name="latticeml_version")
      import :: c_ptr
    end function

    type(c_ptr) function latticeml_last_error() bind(C, name="latticeml_last_error")
      import :: c_ptr
    end function

    integer(c_size_t) function latticeml_last_error_copy(buf, len) &
        bind(C, name="latticeml_last_error_copy")
      import :: c_size_t, c_char
      character(kind=c_char), intent(out) :: buf(*)
      integer(c_size_t), value :: len
    end function

    integer(c_int) function latticeml_device_new(name, out) bind(C, name="latticeml_device_new")
      import :: c_int, c_char, c_ptr
      character(kind=c_char), intent(in) :: name(*)
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_device_describe(device, buf, len) &
        bind(C, name="latticeml_device_describe")
      import :: c_int, c_ptr, c_char, c_size_t
      type(c_ptr), value :: device
      character(kind=c_char), intent(out) :: buf(*)
      integer(c_size_t), value :: len
    end function

    subroutine latticeml_device_free(device) bind(C, name="latticeml_device_free")
      import :: c_ptr
      type(c_ptr), value :: device
    end subroutine

    integer(c_int) function latticeml_theory_phi4(dims, extents, kappa, lambda, out) &
        bind(C, name="latticeml_theory_phi4")
      import :: c_int, c_size_t, c_double, c_ptr
      integer(c_size_t), value :: dims
      integer(c_size_t), intent(in) :: extents(*)
      real(c_double), value :: kappa, lambda
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_theory_phi4_standard(dims, extents, m2, lambda0, out) &
        bind(C, name="latticeml_theory_phi4_standard")
      import :: c_int, c_size_t, c_double, c_ptr
      integer(c_size_t), value :: dims
      integer(c_size_t), intent(in) :: extents(*)
      real(c_double), value :: m2, lambda0
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_theory_oscillator(mass, lambda, f, beta, n, out) &
        bind(C, name="latticeml_theory_oscillator")
      import :: c_int, c_size_t, c_double, c_ptr
      real(c_double), value :: mass, lambda, f, beta
      integer(c_size_t), value :: n
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_theory_xy(dims, extents, beta, out) &
        bind(C, name="latticeml_theory_xy")
      import :: c_int, c_size_t, c_double, c_ptr
      integer(c_size_t), value :: dims
      integer(c_size_t), intent(in) :: extents(*)
      real(c_double), value :: beta
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_theory_ising(dims, extents, beta, out) &
        bind(C, name="latticeml_theory_ising")
      import :: c_int, c_size_t, c_double, c_ptr
      integer(c_size_t), value :: dims
      integer(c_size_t), intent(in) :: extents(*)
      real(c_double), value :: beta
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_theory_volume(theory, out) &
        bind(C, name="latticeml_theory_volume")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: theory
      integer(c_size_t), intent(out) :: out
    end function

    subroutine latticeml_theory_free(theory) bind(C, name="latticeml_theory_free")
      import :: c_ptr
      type(c_ptr), value :: theory
    end subroutine

    integer(c_int) function latticeml_hmc_new(theory, device, chains, tau, steps, integrator, &
        seed, out) bind(C, name="latticeml_hmc_new")
      import :: c_int, c_ptr, c_size_t, c_double, c_char, c_int64_t
      type(c_ptr), value :: theory, device
      integer(c_size_t), value :: chains, steps
      real(c_double), value :: tau
      character(kind=c_char), intent(in) :: integrator(*)
      integer(c_int64_t), value :: seed
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_fa_hmc_new(theory, device, chains, tau, steps, &
        integrator, seed, m2, out) bind(C, name="latticeml_fa_hmc_new")
      import :: c_int, c_ptr, c_size_t, c_double, c_char, c_int64_t
      type(c_ptr), value :: theory, device
      integer(c_size_t), value :: chains, steps
      real(c_double), value :: tau, m2
      character(kind=c_char), intent(in) :: integrator(*)
      integer(c_int64_t), value :: seed
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_langevin_new(theory, device, chains, epsilon, adjusted, &
        seed, out) bind(C, name="latticeml_langevin_new")
      import :: c_int, c_ptr, c_size_t, c_double, c_int64_t
      type(c_ptr), value :: theory, device
      integer(c_size_t), value :: chains
      real(c_double), value :: epsilon
      integer(c_int), value :: adjusted
      integer(c_int64_t), value :: seed
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_local_new(theory, device, chains, algorithm, hits, &
        clusters, seed, out) bind(C, name="latticeml_local_new")
      import :: c_int, c_ptr, c_size_t, c_char, c_int32_t, c_int64_t
      type(c_ptr), value :: theory, device
      integer(c_size_t), value :: chains
      character(kind=c_char), intent(in) :: algorithm(*)
      integer(c_int32_t), value :: hits, clusters
      integer(c_int64_t), value :: seed
      type(c_ptr), intent(out) :: out
    end function

    subroutine latticeml_sampler_free(sampler) bind(C, name="latticeml_sampler_free")
      import :: c_ptr
      type(c_ptr), value :: sampler
    end subroutine

    integer(c_int) function latticeml_sampler_set_first_chain(sampler, first) &
        bind(C, name="latticeml_sampler_set_first_chain")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: sampler
      integer(c_size_t), value :: first
    end function

    integer(c_int) function latticeml_sampler_chains(sampler, out) &
        bind(C, name="latticeml_sampler_chains")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: sampler
      integer(c_size_t), intent(out) :: out
    end function

    integer(c_int) function latticeml_sampler_updates_done(sampler, out) &
        bind(C, name="latticeml_sampler_updates_done")
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: sampler
      integer(c_int64_t), intent(out) :: out
    end function

    integer(c_int) function latticeml_sampler_thermalize(sampler, updates) &
        bind(C, name="latticeml_sampler_thermalize")
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: sampler
      integer(c_int64_t), value :: updates
    end function

    integer(c_int) function latticeml_sampler_run(sampler, updates, out) &
        bind(C, name="latticeml_sampler_run")
      import :: c_int, c_ptr, c_int64_t
      type(c_ptr), value :: sampler
      integer(c_int64_t), value :: updates
      type(c_ptr), intent(out) :: out
    end function

    integer(c_int) function latticeml_sampler_get_fields(sampler, buf, len) &
        bind(C, name="latticeml_sampler_get_fields")
      import :: c_int, c_ptr, c_double, c_size_t
      type(c_ptr), value :: sampler
      real(c_double), intent(out) :: buf(*)
      integer(c_size_t), value :: len
    end function

    integer(c_int) function latticeml_sampler_set_fields(sampler, buf, len) &
        bind(C, name="latticeml_sampler_set_fields")
      import :: c_int, c_ptr, c_double, c_size_t
      type(c_ptr), value :: sampler
      real(c_double), intent(in) :: buf(*)
      integer(c_size_t), value :: len
    end function

    integer(c_int) function latticeml_sampler_get_fields_device(sampler, dptr, len, stream) &
        bind(C, name="latticeml_sampler_get_fields_device")
      import :: c_int, c_ptr, c_int64_t, c_size_t
      type(c_ptr), value :: sampler
      integer(c_int64_t), value :: dptr
      integer(c_size_t), value :: len
      type(c_ptr), value :: stream
    end function

    integer(c_int) function latticeml_sampler_set_fields_device(sampler, dptr, len, stream) &
        bind(C, name="latticeml_sampler_set_fields_device")
      import :: c_int, c_ptr, c_int64_t, c_size_t
      type(c_ptr), value :: sampler
      integer(c_int64_t), value :: dptr
      integer(c_size_t), value :: len
      type(c_ptr), value :: stream
    end function

    integer(c_int) function latticeml_sampler_checkpoint(sampler, path) &
        bind(C, name="latticeml_sampler_checkpoint")
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: sampler
      character(kind=c_char), intent(in) :: path(*)
    end function

    integer(c_int) function latticeml_sampler_restore(sampler, path) &
        bind(C, name="latticeml_sampler_restore")
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: sampler
      character(kind=c_char), intent(in) :: path(*)
    end function

    subroutine latticeml_result_free(result) bind(C, name="latticeml_result_free")
      import :: c_ptr
      type(c_ptr), value :: result
    end subroutine

    integer(c_int) function latticeml_result_shape(result, updates, chains) &
        bind(C, name="latticeml_result_shape")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: result
      integer(c_size_t), intent(out) :: updates, chains
    end function

    integer(c_int) function latticeml_result_observable_count(result, out) &
        bind(C, name="latticeml_result_observable_count")
      import :: c_int, c_ptr, c_size_t
      type(c_ptr), value :: result
      integer(c_size_t), intent(out) :: out
    end function

    integer(c_int) function latticeml_result_observable_name(result, index, buf, len) &
        bind(C, name="latticeml_result_observable_name")
      import :: c_int, c_ptr, c_size_t, c_char
      type(c_ptr), value :: result
      integer(c_size_t), value :: index, len
      character(kind=c_char), intent(out) :: buf(*)
    end function

    integer(c_int) function latticeml_result_observable(result, name, value, error, tau_int) &
        bind(C, name="latticeml_result_observable")
      import :: c_int, c_ptr, c_char, c_double
      type(c_ptr), value :: result
      character(kind=c_char), intent(in) :: name(*)
      real(c_double), intent(out) :: value, error, tau_int
    end function

    integer(c_int) function latticeml_result_acceptance(result, out) &
        bind(C, name="latticeml_result_acceptance")
      import :: c_int, c_ptr, c_double
      type(c_ptr), value :: result
      real(c_double), intent(out) :: out
    end function

    integer(c_int) function latticeml_result_exp_minus_delta_h(result, mean, error) &
        bind(C, name="latticeml_result_exp_minus_delta_h")
      import :: c_int, c_ptr, c_double
      type(c_ptr), value :: result
      real(c_double), intent(out) :: mean, error
    end function

    integer(c_int) function latticeml_result_delta_h(result, buf, len) &
        bind(C, name="latticeml_result_delta_h")
      import :: c_int, c_ptr, c_double, c_size_t
      type(c_ptr), value :: result
      real(c_double), intent(out) :: buf(*)
      integer(c_size_t), value :: len
    end function

    integer(c_int) function latticeml_result_series(result, name, buf, len) &
        bind(C, name="latticeml_result_series")
      import :: c_int, c_ptr, c_char, c_double, c_size_t
      type(c_ptr), value :: result
      character(kind=c_char), intent(in) :: name(*)
      real(c_double), intent(out) :: buf(*)
      integer(c_size_t), value :: len
    end function
  end interface

contains

  ! The last error message of this thread as a Fortran string (blank-padded to 1024 characters).
  function latticeml_error_message() result(message)
    character(len=1024) :: message
    character(kind=c_char) :: buf(1024)
    integer(c_size_t) :: n, i
    n = latticeml_last_error_copy(buf, int(size(buf), c_size_t))
    message = ' '
    do i = 1, min(n, int(size(buf) - 1, c_size_t))
      message(i:i) = buf(i)
    end do
  end function
end module latticeml
