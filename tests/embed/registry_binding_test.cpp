// _mphost.registry_*: the registrations of the current resource registry seen
// from Python, with and without a registry.
#include <gtest/gtest.h>

#include <unistd.h>

#include <string>

#include "mphost/ipc/resource_registry.hpp"
#include "python_test_support.hpp"

namespace {

using mphost::embed::testing::scope;
using mphost::ipc::resource_registry;

std::string registry_prefix() { return "mphost-t" + std::to_string(::getpid()) + "-embreg-"; }

class RegistryBindingTest : public ::testing::Test {
 protected:
  void TearDown() override { mphost::ipc::set_current_registry(resource_registry()); }
};

TEST_F(RegistryBindingTest, WithoutARegistryNothingIsKeptAndNothingFails) {
  mphost::ipc::set_current_registry(resource_registry());
  scope s;
  ASSERT_TRUE(s.exec("import _mphost"));
  EXPECT_EQ(s.show("_mphost.registry_add('shared_memory', '/psm_x', 1)"), "False");
  EXPECT_EQ(s.show("_mphost.registry_drop('shared_memory', '/psm_x')"), "0");
  EXPECT_EQ(s.show("_mphost.registry_entries()"), "[]");
  EXPECT_EQ(s.show("_mphost.registry_move(1, 2)"), "0");
  EXPECT_EQ(s.show("_mphost.registry_name()"), "None");
  EXPECT_EQ(s.show("_mphost.registry_finish_abandoned()"), "False");
}

TEST_F(RegistryBindingTest, RegistrationsRoundTripPerWatcher) {
  resource_registry created = resource_registry::create(64, registry_prefix(), 16);
  const std::string name = created.name();
  mphost::ipc::set_current_registry(std::move(created));
  scope s;
  ASSERT_TRUE(s.exec("import _mphost"));
  EXPECT_EQ(s.show("_mphost.registry_name()"), "'" + name + "'");
  EXPECT_EQ(s.show("[_mphost.registry_add('shared_memory', '/psm_a', 2**63 + 5), "
                   "_mphost.registry_add('folder', '/tmp/a:b', 6), _mphost.registry_add('', 'x', 6)]"),
            "[True, True, False]");
  EXPECT_EQ(s.show("_mphost.registry_entries(2**63 + 5)"), "[('shared_memory', '/psm_a')]");
  EXPECT_EQ(s.show("sorted(_mphost.registry_entries())"), "[('folder', '/tmp/a:b'), ('shared_memory', '/psm_a')]");
  EXPECT_EQ(s.show("_mphost.registry_move(source=6, target=2**63 + 5)"), "1");
  EXPECT_EQ(s.show("_mphost.registry_entries(6)"), "[]");
  EXPECT_EQ(s.show("_mphost.registry_drop('folder', '/tmp/a:b')"), "1");
  EXPECT_EQ(s.show("_mphost.registry_entries(watcher=2**63 + 5)"), "[('shared_memory', '/psm_a')]");
  // A live owner (this process): nothing is removed.
  EXPECT_EQ(s.show("_mphost.registry_finish_abandoned()"), "False");
  // A watcher is an unsigned 64-bit number.
  EXPECT_EQ(s.show("_mphost.registry_add('noop', 'x', -1)").rfind("raised builtins.TypeError", 0), 0u);
  mphost::ipc::current_registry()->remove_all();
}

TEST_F(RegistryBindingTest, RemovalByTypeReportsAnErrnoValue) {
  scope s;
  ASSERT_TRUE(s.exec("import _mphost, errno, os, tempfile\n"
                     "d = tempfile.mkdtemp()\n"
                     "open(os.path.join(d, 'f'), 'w').close()\n"));
  EXPECT_EQ(s.show("_mphost.registry_remove('semlock', '/x') == errno.EINVAL"), "True");
  EXPECT_EQ(s.show("_mphost.registry_remove('folder', 'relative') == errno.EINVAL"), "True");
  EXPECT_EQ(s.show("_mphost.registry_remove('file', os.path.join(d, 'f'))"), "0");
  EXPECT_EQ(s.show("_mphost.registry_remove('file', os.path.join(d, 'f')) == errno.ENOENT"), "True");
  EXPECT_EQ(s.show("(_mphost.registry_remove('folder', d), os.path.exists(d))"), "(0, False)");
  EXPECT_EQ(s.show("_mphost.registry_remove('shared_memory', '/mphost-no-such-name') == errno.ENOENT"), "True");
}

}  // namespace
