// Writes that survive a crash: file contents and directory entries reach the disk before
// the call returns (fsync), so a rename that follows publishes complete data.
#pragma once
#include <string>
#include <string_view>

namespace whale {

// Writes `data` to `path` (created or truncated) and fsyncs it; Error naming the file on failure.
void write_file_synced(const std::string& path, std::string_view data);
// fsyncs a file that is already written (e.g. by another writer).
void sync_file(const std::string& path);
// fsyncs a directory, so the entries created, renamed or removed in it are on disk.
void sync_directory(const std::string& path);

// Fault injection for crash tests: with WHALE_FAULT=NAME or NAME:N in the environment, the
// Nth time (default the first) the program reaches fault_point(NAME) it ends at once with
// _exit(137), as a kill -9 there would. Without WHALE_FAULT it costs one cached lookup.
void fault_point(const char* name);

}  // namespace whale
