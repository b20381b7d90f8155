"""The smallest plugin the README shows a plugin author, run natively
against the same generated bindings: it must import, describe itself,
configure (reporting its origin), refuse a missing setting, and answer an
empty page, so that the README's example does not rot."""

import pathlib
import types
import unittest

from componentize_py_types import Err
from wit_world.imports import scanner_plugin_types as t

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def skeleton():
    text = README.read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("### In Python: the Dependabot plugin"))
    code = text[start + len("```python\n"):text.index("```", start + 10)]
    module = types.ModuleType("readme_skeleton")
    exec(compile(code, str(README), "exec"), module.__dict__)
    return module.ScannerSource()


class ReadmeSkeletonTest(unittest.TestCase):
    def test_it_describes_configures_and_answers_an_empty_page(self):
        plugin = skeleton()
        info = plugin.describe()
        self.assertEqual(info.name, "example")
        self.assertEqual([f.key for f in info.fields], ["api-url"])
        configured = plugin.configure([t.Setting("api-url", t.SettingValue_Text("https://scanner.example.com"))])
        self.assertEqual(configured.egress, ["https://scanner.example.com:443"])
        self.assertEqual(plugin.test().endpoint, "https://scanner.example.com")
        page = plugin.fetch_findings(None)
        self.assertEqual((page.findings, page.next_cursor, page.incremental), ([], None, False))

    def test_a_missing_setting_is_an_invalid_config_naming_it(self):
        with self.assertRaises(Err) as refused:
            skeleton().configure([])
        self.assertIsInstance(refused.exception.value, t.PluginError_InvalidConfig)
        self.assertEqual(refused.exception.value.value.field, "api-url")


if __name__ == "__main__":
    unittest.main()
