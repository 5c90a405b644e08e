"""Load the bench and monitoring helpers from the roles' files/ directories (they are not packages)."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
REPORT_FILE = ROOT / "roles" / "pd_bench" / "files" / "pd_bench_report.py"
SCRAPE_FILE = ROOT / "roles" / "pd_bench" / "files" / "pd_bench_scrape.py"
TEXTFILE_FILE = ROOT / "roles" / "pd_monitoring" / "files" / "erdma_textfile.py"
FIXTURES = ROOT / "tests" / "unit" / "fixtures"


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
