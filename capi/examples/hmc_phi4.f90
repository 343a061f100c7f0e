! HMC on 2D phi^4 from Fortran through latticeml's C interface (include/latticeml.f90): the
! same run as capi/examples/hmc_phi4.c, printing the same lines.
!
!   cargo build --release -p latticeml-capi
!   gfortran -O2 include/latticeml.f90 capi/examples/hmc_phi4.f90 -L target/release \
!     -llatticeml_c -Wl,-rpath,$PWD/target/release -o hmc_phi4_f
!   ./hmc_phi4_f [seed]
program hmc_phi4
  use, intrinsic :: iso_c_binding
  use latticeml
  implicit none

  integer(c_size_t), parameter :: chains = 8
  integer(c_size_t) :: extents(2) = [8_c_size_t, 8_c_size_t]
  type(c_ptr) :: device, theory, hmc, result
  integer(c_int64_t) :: seed
  integer(c_size_t) :: count, i, volume
  real(c_double) :: value, error, tau, acceptance
  real(c_double), allocatable :: phi(:, :)
  character(kind=c_char) :: name(64)
  character(len=64) :: arg, label
  integer :: k

  seed = 1
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read (arg, *) seed
  end if

  call check(latticeml_device_new("cpu"//c_null_char, device), "device")
  call check(latticeml_theory_phi4(2_c_size_t, extents, 0.26_c_double, 0.022_c_double, theory), &
             "theory")
  call check(latticeml_hmc_new(theory, device, chains, 1.0_c_double, 8_c_size_t, &
                               "omelyan"//c_null_char, seed, hmc), "hmc")
  call check(latticeml_sampler_thermalize(hmc, 200_c_int64_t), "thermalize")
  call check(latticeml_sampler_run(hmc, 1000_c_int64_t, result), "run")

  call check(latticeml_result_observable_count(result, count), "count")
  do i = 0, count - 1
    call check(latticeml_result_observable_name(result, i, name, int(size(name), c_size_t)), &
               "name")
    label = ' '
    do k = 1, size(name)
      if (name(k) == c_null_char) exit
      label(k:k) = name(k)
    end do
    call check(latticeml_result_observable(result, name, value, error, tau), "observable")
    write (*, '(a, 1x, es25.17e3, 1x, es25.17e3)') trim(label), value, error
  end do
  call check(latticeml_result_acceptance(result, acceptance), "acceptance")
  write (*, '(a, 1x, es25.17e3, 1x, a)') 'acceptance', acceptance, '0'
  call check(latticeml_result_exp_minus_delta_h(result, value, error), "exp_minus_dh")
  write (*, '(a, 1x, es25.17e3, 1x, es25.17e3)') 'exp_minus_dh', value, error

  ! The fields as phi(site, chain): the C layout [chain][site] seen from Fortran.
  call check(latticeml_theory_volume(theory, volume), "volume")
  allocate (phi(volume, chains))
  call check(latticeml_sampler_get_fields(hmc, phi, volume * chains), "fields")
  write (*, '(a, 1x, es25.17e3, 1x, a)') 'chain0_magnetisation', sum(phi(:, 1)) / volume, '0'

  call latticeml_result_free(result)
  call latticeml_sampler_free(hmc)
  call latticeml_theory_free(theory)
  call latticeml_device_free(device)

contains

  subroutine check(status, what)
    integer(c_int), intent(in) :: status
    character(len=*), intent(in) :: what
    if (status /= LATTICEML_OK) then
      write (0, '(a, a, i0, a, a)') what, ' failed (', status, '): ', &
        trim(latticeml_error_message())
      stop 1
    end if
  end subroutine
end program hmc_phi4
