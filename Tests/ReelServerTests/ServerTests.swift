import Testing
import HummingbirdTesting
import HummingbirdWSTesting
@testable import ReelServer
