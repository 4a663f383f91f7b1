# Run after a GoogleTest binary is linked (cmake -P, see xfer_discover_gtests in
# tests/CMakeLists.txt): asks the binary for its cases and writes OUTPUT, a
# CTest file with one entry per suite. Variables:
#   BINARY   the test binary          OUTPUT   the CTest file to write
#   PREFIX   put before each name      SLOW     gtest patterns (a:b) of slow cases
#   RUNNER   tests/gtest/run_suite.sh  WORKDIR  the entries' working directory
# A suite's cases that match SLOW form a second entry, "<name>.slow" (or
# "<name>" when every case is slow), labelled slow; the others are labelled unit.
cmake_minimum_required(VERSION 3.20)

# The cases of BINARY that pass FILTER, as "Suite.Case" strings.
function(list_cases filter out_var)
  execute_process(COMMAND "${BINARY}" --gtest_list_tests "--gtest_filter=${filter}"
                  OUTPUT_VARIABLE listing ERROR_VARIABLE errors RESULT_VARIABLE rc
                  TIMEOUT 120)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "listing the cases of ${BINARY} failed (${rc}): ${errors}")
  endif()
  # "Suite.\n  Case\n" with "  # GetParam() = ..." comments: drop the comments
  # first, they may hold the ; and [ ] that CMake lists treat specially.
  string(REGEX REPLACE "[ \t]*#[^\n]*" "" listing "${listing}")
  string(REPLACE "\n" ";" lines "${listing}")
  set(cases)
  set(suite)
  foreach(line IN LISTS lines)
    if(line MATCHES "^  +([^ ]+)$")
      list(APPEND cases "${suite}${CMAKE_MATCH_1}")
    elseif(line MATCHES "^([^ ]+\\.)$")
      set(suite "${CMAKE_MATCH_1}")
    elseif(line MATCHES "^Running main\\(\\) from ")
      # gtest_main's greeting, printed before the listing.
    elseif(NOT line STREQUAL "")
      message(FATAL_ERROR "${BINARY} --gtest_list_tests printed an unexpected line: '${line}'")
    endif()
  endforeach()
  set(${out_var} "${cases}" PARENT_SCOPE)
endfunction()

# The suite of CASE ("Suite.Case" -> "Suite"), into out_var.
function(suite_of case out_var)
  string(REGEX REPLACE "\\.[^.]+$" "" suite "${case}")
  set(${out_var} "${suite}" PARENT_SCOPE)
endfunction()

# Appends to `text` one add_test per suite of CASES: NAME_SUFFIX after the
# suite's name, LABEL and TIMEOUT as given.
function(add_suites cases label timeout name_suffix)
  set(suites)
  foreach(case IN LISTS cases)
    suite_of("${case}" suite)
    list(APPEND suites "${suite}")
    list(APPEND "members_${suite}" "${case}")
  endforeach()
  list(REMOVE_DUPLICATES suites)
  foreach(suite IN LISTS suites)
    list(JOIN "members_${suite}" ":" filter)
    set(name "${PREFIX}${suite}${name_suffix}")
    string(APPEND text
      "add_test([==[${name}]==] bash [==[${RUNNER}]==] [==[${BINARY}]==] [==[--gtest_filter=${filter}]==])\n"
      "set_tests_properties([==[${name}]==] PROPERTIES LABELS ${label} TIMEOUT ${timeout}"
      " SKIP_RETURN_CODE 77 WORKING_DIRECTORY [==[${WORKDIR}]==])\n")
  endforeach()
  set(text "${text}" PARENT_SCOPE)
endfunction()

set(text "# Written by tests/gtest/list_suites.cmake from ${BINARY}; do not edit.\n")
if(SLOW STREQUAL "")
  list_cases("*" unit_cases)
  set(slow_cases)
else()
  list_cases("-${SLOW}" unit_cases)
  list_cases("${SLOW}" slow_cases)
endif()
add_suites("${unit_cases}" unit 300 "")
# A suite split in two keeps its plain name for the unit part.
set(unit_suites)
foreach(case IN LISTS unit_cases)
  suite_of("${case}" suite)
  list(APPEND unit_suites "${suite}")
endforeach()
set(whole_slow)
set(split_slow)
foreach(case IN LISTS slow_cases)
  suite_of("${case}" suite)
  if(suite IN_LIST unit_suites)
    list(APPEND split_slow "${case}")
  else()
    list(APPEND whole_slow "${case}")
  endif()
endforeach()
add_suites("${whole_slow}" slow 600 "")
add_suites("${split_slow}" slow 600 ".slow")
file(WRITE "${OUTPUT}" "${text}")
